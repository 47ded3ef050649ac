"""The atoms of a dataset's released populations, stored as a snapshot and a log.

``sandbox.small_atoms`` tells which groups of a new aggregate release would make an atom of
1 … k−1 units (the guarantee and its limits: ``sandbox/disclosure/atoms.py`` and the
README); this module keeps the partition those checks run against, per (dataset, unit
column), so that storing a release costs what the release adds, not what the dataset holds:

- ``release_refinements``, an append-only log: one row per release that recorded cells (a
  repeat of released populations records none), holding their member hashes (8 bytes a
  member), as version ``seq``. Refining a partition by
  the cells of several releases at once gives the same atoms as one release after another.
- ``release_partitions``, the snapshot: the partition as of version ``base`` (16 bytes a unit).
- ``release_partition_heads``, one small row: the newest version ``head`` and ``base``, each
  with a random tag, the cells released, the log's bytes after ``base``.
- each replica's ``PartitionCopies`` (``releases.copies``): the partition as of a version.

``load`` reads the head row (one statement). A copy whose (version, tag) is the head's is
used as it is; else the log rows after the copy's version are read and applied (the copy's
own row, or the snapshot, must still carry its tag); else the snapshot and the log after it.
So a release through another replica, a compaction, a scheme change or a database restored
from a backup is always seen, and a copy of a version that never committed is never used.
``write`` moves the head and appends the log row; when the log after ``base`` holds more bytes
than the new partition's snapshot would, it writes the snapshot (``base`` = ``head``) and
deletes the log before the previous ``base`` (what is after it stays, so a replica a little
behind still reads only what it lacks). Compaction costs the snapshot once the releases since
the last one have written as many bytes: per release, the cost stays proportional to it.

A release decides against a partition before taking any lock (``load`` and ``prepare``, the
refinement's CPU work, on a read snapshot), then stores it with ``write`` in its transaction
after ``history.lock`` has taken the dataset's lock. ``write`` moves the head first and only
if it is still the version loaded, else it raises ``Stale`` before writing anything: nothing
is recorded against a stale partition, and the caller decides again under the lock. Every
release that records cells in the history (``history.record``) moves the head in the same
transaction, so an unmoved head means that neither the partition nor the history changed
since the decision. The caller keeps the state ``write`` returns only once the transaction
has committed.

A partition made with another hash scheme (a DuckDB whose ``hash`` differs) cannot be
compared with new hashes; it is replaced by a fresh one, and releases made before are then
no longer counted (as with population sketches).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from gateway.jobs.releases import history
from gateway.jobs.releases.copies import Atoms, PartitionCopies
from gateway.store import db, schema
from sandbox import (
    GroupKey,
    Partition,
    cells_from_bytes,
    cells_to_bytes,
    refined_partition,
    small_atoms,
)

REASON = (
    "with the cells released before, adding and subtracting released cells would single out "
    "a population of fewer than {k} units"
)
UNIT_BYTES = 16  # a unit in a snapshot: its hash and its atom label


class KeyMismatch(RuntimeError):
    """This gateway hashes units with another population key than the releases stored."""


def load(
    conn: sa.Connection,
    copies: PartitionCopies,
    *,
    dataset_id: str,
    unit_column: str,
    scheme: str,
    key_id: str,
    locked: bool = True,
) -> Atoms:
    """The partition as stored now: under the dataset's lock (``history.lock``), or with
    ``locked=False`` on a read snapshot, as stored then (``write`` checks that it still is).

    Raises ``KeyMismatch`` when its units were hashed with another population key than
    ``key_id`` (a replica set up with a key of its own): the check would miss every release
    made elsewhere, so nothing is released until the keys agree.
    """
    h = schema.release_partition_heads
    row = conn.execute(
        sa.select(
            h.c.scheme,
            h.c.head,
            h.c.head_tag,
            h.c.base,
            h.c.base_tag,
            h.c.cells,
            h.c.log_bytes,
            h.c.key_id,
            h.c.covers_after,
        ).where(h.c.dataset_id == dataset_id, h.c.unit_column == unit_column)
    ).first()
    empty = Partition.empty()
    if row is None:
        return Atoms(
            dataset_id,
            unit_column,
            scheme,
            empty,
            fresh=True,
            key_id=key_id,
            covers_after=history.newest_cell(conn, dataset_id, unit_column),
        )
    if row.key_id is not None and row.key_id != key_id:
        raise KeyMismatch(
            f"this gateway's population key ({key_id}) is not the one the stored releases of "
            f"{dataset_id} were hashed with ({row.key_id}): give every replica the same "
            "keys/population.key"
        )
    if row.scheme != scheme:
        return Atoms(
            dataset_id,
            unit_column,
            scheme,
            empty,
            row.head,
            row.head_tag,
            fresh=True,
            key_id=key_id,
            covers_after=history.newest_cell(conn, dataset_id, unit_column),
        )
    atoms = Atoms(
        dataset_id,
        unit_column,
        scheme,
        empty,
        row.head,
        row.head_tag,
        base=row.base,
        base_tag=row.base_tag,
        cells=row.cells,
        log_bytes=row.log_bytes,
        key_id=key_id,
        covers_after=row.covers_after,
    )
    copy = copies.get(atoms.key)
    partition = None if copy is None else _caught_up(conn, copy, atoms)
    if partition is None:
        # Under the lock the head is the newest version: a copy it does not lead to is of
        # another history than the store's (a restored backup), never used again. On a
        # snapshot, a copy ahead of it was kept by a release committed since: left as it is.
        ahead = copy is not None and copy.scheme == atoms.scheme and copy.seq > atoms.seq
        if copy is not None and (locked or not ahead):
            copies.drop(atoms.key)
        partition = _read(conn, atoms)
    return replace(atoms, partition=partition)


def covered_after(atoms: Atoms, scheme: str) -> int | None:
    """For ``history.check``: the id after which released cells are covered by the atom
    check of ``atoms`` for sketches of ``scheme`` (None: compare every cell pairwise)."""
    if not scheme or atoms.scheme != scheme:
        return None
    return atoms.covers_after


def _caught_up(conn: sa.Connection, copy: Atoms, head: Atoms) -> Partition | None:
    """The copy brought to the head by the log rows after it, or None if it cannot be."""
    if copy.scheme != head.scheme or copy.seq > head.seq:
        return None
    if copy.seq == head.seq:
        return copy.partition if copy.tag == head.tag else None
    entries = _entries(conn, head, since=copy.seq)
    if copy.seq == head.base and copy.tag == head.base_tag:
        entries = [e for e in entries if e.seq > copy.seq]
    elif entries and entries[0].seq == copy.seq and entries[0].tag == copy.tag:
        entries = entries[1:]
    else:
        return None
    return _replayed(copy.partition, entries, copy.seq, head)


def _read(conn: sa.Connection, head: Atoms) -> Partition:
    """The snapshot and the log after it (a replica without a usable copy)."""
    p = schema.release_partitions
    snapshot = conn.execute(
        sa.select(p.c.scheme, p.c.base, p.c.base_tag, p.c.data).where(
            p.c.dataset_id == head.dataset_id, p.c.unit_column == head.unit_column
        )
    ).first()
    if snapshot is None or (snapshot.scheme, snapshot.base, snapshot.base_tag) != (
        head.scheme,
        head.base,
        head.base_tag,
    ):
        raise RuntimeError("the stored partition's snapshot is not the one its head names")
    entries = _entries(conn, head, since=head.base + 1)
    partition = _replayed(Partition.from_bytes(bytes(snapshot.data)), entries, head.base, head)
    if partition is None:
        raise RuntimeError("the stored partition's log is incomplete")
    return partition


def _entries(conn: sa.Connection, head: Atoms, *, since: int) -> Sequence[Any]:
    r = schema.release_refinements
    return conn.execute(
        sa.select(r.c.seq, r.c.tag, r.c.cells)
        .where(
            r.c.dataset_id == head.dataset_id,
            r.c.unit_column == head.unit_column,
            r.c.seq >= since,
            r.c.seq <= head.seq,
        )
        .order_by(r.c.seq)
    ).all()


def _replayed(
    partition: Partition, entries: Sequence[Any], since: int, head: Atoms
) -> Partition | None:
    """``partition`` (version ``since``) refined by ``entries``, which must lead to the head."""
    if [e.seq for e in entries] != list(range(since + 1, head.seq + 1)):
        return None
    if (entries[-1].tag if entries else head.base_tag) != head.tag:
        return None
    cells = [c for e in entries for c in cells_from_bytes(bytes(e.cells))]
    return refined_partition(partition, dict(enumerate(cells))) if cells else partition


def withheld(partition: Partition, members: Mapping[GroupKey, Any], k: int) -> dict[GroupKey, str]:
    """The groups whose release would create an atom of 1 … k−1 units, with the reason."""
    return {g: REASON.format(k=k) for g in small_atoms(partition, members, k)}


@dataclass(frozen=True, slots=True)
class Saving:
    """A release's cells as ``write`` stores them, made by ``prepare`` (the refinement and
    its bytes: CPU work that needs no lock). ``entry``: the log row's member hashes (None on a
    fresh start, which clears the log); ``compact``: the log before the loaded snapshot goes;
    ``snapshot``: the partition's bytes when the snapshot moves to this version."""

    loaded: Atoms
    after: Atoms
    entry: bytes | None
    compact: bool
    snapshot: bytes | None


class Stale(RuntimeError):
    """The stored partition moved since it was loaded: nothing was written; decide again
    against the partition as stored now."""


def save(
    conn: sa.Connection,
    atoms: Atoms,
    released: Mapping[GroupKey, Any],
    *,
    compact_at: float = 1.0,
) -> Atoms:
    """Record the released cells (nothing when none was): ``write`` of ``prepare``."""
    saving = prepare(atoms, released, compact_at=compact_at)
    return atoms if saving is None else write(conn, saving)


def prepare(
    atoms: Atoms, released: Mapping[GroupKey, Any], *, compact_at: float = 1.0
) -> Saving | None:
    """What storing the released cells writes (None when none was released).

    Compacts when the log after the snapshot exceeds ``compact_at`` × the new snapshot's size.
    """
    if not released:
        return None
    new = refined_partition(atoms.partition, released)
    seq, tag = atoms.seq + 1, secrets.token_hex(8)
    after = replace(atoms, partition=new, seq=seq, tag=tag, fresh=False)
    entry: bytes | None = None
    compact = False
    if atoms.fresh:  # a first release, or another scheme's partition is replaced
        after = replace(after, base=seq, base_tag=tag, cells=len(released), log_bytes=0)
    else:
        entry = cells_to_bytes(list(released.values()))
        after = replace(after, cells=atoms.cells + len(released))
        after = replace(after, log_bytes=atoms.log_bytes + len(entry))
        if after.log_bytes > compact_at * UNIT_BYTES * new.size:
            # the snapshot moves to this version; the log before the previous one goes
            compact = True
            after = replace(after, base=seq, base_tag=tag, log_bytes=0)
    snapshot = after.partition.to_bytes() if after.base == seq else None
    return Saving(atoms, after, entry, compact, snapshot)


def write(conn: sa.Connection, saving: Saving) -> Atoms:
    """Store ``saving``: the partition after it, to ``PartitionCopies.keep`` once the
    transaction has committed. The head moves first, and only from the version the cells
    were decided against: if another release moved it since, ``Stale`` is raised before
    anything else is written (the caller rolls back and decides again under the lock)."""
    atoms, after = saving.loaded, saving.after
    _write_head(conn, atoms, after)
    r = schema.release_refinements
    log = (r.c.dataset_id == atoms.dataset_id, r.c.unit_column == atoms.unit_column)
    if saving.entry is None:
        conn.execute(r.delete().where(*log))
    else:
        conn.execute(
            r.insert().values(
                dataset_id=atoms.dataset_id,
                unit_column=atoms.unit_column,
                seq=after.seq,
                tag=after.tag,
                cells=saving.entry,
                created_at=datetime.now(UTC),
            )
        )
        if saving.compact:
            conn.execute(r.delete().where(*log, r.c.seq < atoms.base))
    if saving.snapshot is not None:
        _write_snapshot(conn, after, saving.snapshot, insert=not atoms.tag)
    return after


def _write_snapshot(conn: sa.Connection, after: Atoms, data: bytes, *, insert: bool) -> None:
    p = schema.release_partitions
    values = {
        "scheme": after.scheme,
        "units": int(after.partition.size),
        "cells": after.cells,
        "data": data,
        "base": after.base,
        "base_tag": after.base_tag,
        "updated_at": datetime.now(UTC),
    }
    key = {"dataset_id": after.dataset_id, "unit_column": after.unit_column}
    if insert:
        conn.execute(p.insert().values(**key, **values))
    else:
        conn.execute(
            p.update()
            .where(p.c.dataset_id == after.dataset_id, p.c.unit_column == after.unit_column)
            .values(**values)
        )


def _write_head(conn: sa.Connection, atoms: Atoms, after: Atoms) -> None:
    """Insert the head, or move it if it is still the version ``atoms`` was loaded at."""
    h = schema.release_partition_heads
    values = {
        "scheme": after.scheme,
        "units": int(after.partition.size),
        "cells": after.cells,
        "head": after.seq,
        "head_tag": after.tag,
        "base": after.base,
        "base_tag": after.base_tag,
        "log_bytes": after.log_bytes,
        "key_id": after.key_id or None,
        "covers_after": after.covers_after,
        "updated_at": datetime.now(UTC),
    }
    if not atoms.tag:
        try:
            conn.execute(
                h.insert().values(
                    dataset_id=atoms.dataset_id, unit_column=atoms.unit_column, **values
                )
            )
        except db.IntegrityError:  # another release stored the first version meanwhile
            raise Stale("the stored partition changed since it was loaded") from None
        return
    done = conn.execute(
        h.update()
        .where(
            h.c.dataset_id == atoms.dataset_id,
            h.c.unit_column == atoms.unit_column,
            h.c.head == atoms.seq,
            h.c.head_tag == atoms.tag,
        )
        .values(**values)
    )
    if done.rowcount != 1:
        raise Stale("the stored partition changed since it was loaded")
