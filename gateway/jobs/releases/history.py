"""The differencing defence: every released cell's population, compared with new releases.

Each released cell of an aggregate release is stored (``release_cells``) with a sketch of the
units it describes (``sandbox.PopulationSketch``, an IBLT of hashes keyed with a
per-deployment secret — the store holds no unit id). A new cell whose population differs from
one released before, by anyone in any department, on the same dataset, by at least one and
fewer than k units is withheld: releasing both would give the difference, a group smaller
than k (e.g. "age 30–50" then "age 30–49" isolates everyone aged 50).

Candidates are prefiltered in SQL by ``|units − units'| < k`` (a symmetric difference is at
least the difference of the sizes), then decoded in Python. A release is checked on a read
snapshot and recorded in a transaction that holds the dataset's lock (PostgreSQL advisory
lock; SQLite's write lock) only if no release was recorded since (``partition.write``; else
it is checked again under the lock), so two concurrent releases cannot both pass against
each other. Cells are recorded before the release is finalised: a release that then fails
leaves cells that were not released, which only makes later releases more cautious.

Limits: the comparison is pairwise; populations assembled from three or more releases are
caught by the atom check (``releases.partition``), which this one predates and which covers
it: cells released with a refinement of the partition are therefore only looked up for exact
repeats (``covered_after``), and the comparison runs against the cells released before the
partition started, whose number no longer grows.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from gateway.store import schema
from sandbox import GroupKey, PopulationSketch, difference_size

KEY_FILE = "population.key"


def population_key(keys_dir: Path) -> str:
    """The per-deployment secret that keys unit hashes; created on first use (mode 0600)."""
    path = keys_dir / KEY_FILE
    if not path.exists():
        keys_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32) + "\n")
    key = path.read_text().strip()
    if len(key) != 64:
        raise RuntimeError("the population key file is damaged")
    return key


def key_id(key: str) -> str:
    """A short public name of the population key: replicas whose keys differ would hash the
    same units differently, and the atom check would then miss releases made elsewhere."""
    return hashlib.sha256(b"insitu population key id\0" + key.encode()).hexdigest()[:16]


def check(
    conn: sa.Connection,
    *,
    dataset_id: str,
    unit_column: str,
    k: int,
    sketches: Mapping[GroupKey, PopulationSketch],
    department: str,
    covered_after: int | None = None,
) -> tuple[dict[GroupKey, str], set[GroupKey]]:
    """Groups whose population is within k of an earlier released cell (with the reason), and
    groups whose exact population ``department`` released before (not recorded again). A
    population only another department released is not withheld and is recorded again, under
    this department: a release that records nothing is a little cheaper (``aggregate``), and
    that must tell a caller nothing about what other departments released.

    Cells with an id above ``covered_after`` (``partition.covered_after``) were released with
    a refinement of the dataset's partition: the atom check, which the caller runs too, covers
    them (a cell differing from one of them by 1 … k−1 units would leave an atom that small),
    so they are only looked up for an exact repeat, not compared; the comparison's cost then
    stays with the cells released before the partition started instead of growing with the
    history.

    Call under the dataset's lock (``lock``) with ``record`` in the same transaction, or on a
    read snapshot whose partition ``partition.write`` then checks is still the stored one
    (every ``record`` moves it).
    """
    withheld: dict[GroupKey, str] = {}
    seen: set[GroupKey] = set()
    if not sketches:
        return withheld, seen
    cells = schema.release_cells
    near = sa.or_(  # sizes within k of a new cell's: a symmetric difference below k is possible
        *(
            sa.and_(cells.c.units >= low, cells.c.units <= high)
            for low, high in _size_ranges([s.units for s in sketches.values()], k)
        )
    )
    wanted = near
    if covered_after is not None:  # covered cells: this department's exact repeats only
        sizes = sorted({s.units for s in sketches.values()})
        wanted = sa.or_(
            sa.and_(cells.c.id <= covered_after, near),
            sa.and_(
                cells.c.id > covered_after,
                cells.c.units.in_(sizes),
                cells.c.department == department,
            ),
        )
    rows = conn.execute(  # one statement, filtered below
        sa.select(
            cells.c.id,
            cells.c.units,
            cells.c.sketch,
            cells.c.cells_per_hash,
            cells.c.scheme,
            cells.c.department,
        ).where(cells.c.dataset_id == dataset_id, cells.c.unit_column == unit_column, wanted)
    ).all()
    covered = {  # exact repeats of this department's cells the atom check covers: seen
        (r.units, r.scheme, r.cells_per_hash, bytes(r.sketch))
        for r in rows
        if covered_after is not None and r.id > covered_after
    }
    candidates: list[Any] = [r for r in rows if covered_after is None or r.id <= covered_after]
    for key, sketch in sketches.items():
        data = sketch.to_bytes()
        if (sketch.units, sketch.scheme, sketch.cells_per_hash, data) in covered:
            seen.add(key)
        for row in candidates:
            if (
                abs(row.units - sketch.units) >= k
                or row.scheme != sketch.scheme
                or row.cells_per_hash != sketch.cells_per_hash
            ):
                continue
            if row.units == sketch.units and bytes(row.sketch) == data:
                if row.department == department:
                    seen.add(key)  # the same population again: nothing new is learnt
                continue
            earlier = PopulationSketch.from_bytes(
                row.cells_per_hash, row.units, row.sketch, sketch.scheme
            )
            size = difference_size(sketch, earlier, limit=k)
            if size == 0:
                if row.department == department:
                    seen.add(key)
            elif size is not None:
                withheld[key] = (
                    f"its population differs from a cell released before by fewer than {k} units"
                )
                break
    return withheld, seen - set(withheld)


def newest_cell(conn: sa.Connection, dataset_id: str, unit_column: str) -> int:
    """The largest id of a released cell of the dataset (0: none): a partition started now
    covers only the cells recorded after it (``partition.covered_after``)."""
    c = schema.release_cells
    return int(
        conn.execute(
            sa.select(sa.func.coalesce(sa.func.max(c.c.id), 0)).where(
                c.c.dataset_id == dataset_id, c.c.unit_column == unit_column
            )
        ).scalar_one()
    )


def _size_ranges(sizes: list[int], k: int) -> list[tuple[int, int]]:
    """The merged ranges [size − k + 1, size + k − 1] of candidate sizes."""
    ranges: list[tuple[int, int]] = []
    for size in sorted(sizes):
        low, high = size - k + 1, size + k - 1
        if ranges and low <= ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], max(ranges[-1][1], high))
        else:
            ranges.append((low, high))
    return ranges


def record(
    conn: sa.Connection,
    *,
    dataset_id: str,
    unit_column: str,
    job_id: str,
    department: str,
    sketches: list[PopulationSketch],
) -> None:
    if not sketches:
        return
    now = datetime.now(UTC)
    conn.execute(
        schema.release_cells.insert(),
        [
            {
                "dataset_id": dataset_id,
                "unit_column": unit_column,
                "cells_per_hash": s.cells_per_hash,
                "scheme": s.scheme,
                "units": s.units,
                "sketch": s.to_bytes(),
                "job_id": job_id,
                "department": department,
                "created_at": now,
            }
            for s in sketches
        ],
    )


def lock(conn: sa.Connection, dataset_id: str) -> None:
    """Serialise check-and-record per dataset (SQLite: the transaction's write lock)."""
    if conn.dialect.name == "postgresql":
        digest = hashlib.sha256(b"insitu.release_cells:" + dataset_id.encode()).digest()
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(:key)"),
            {"key": int.from_bytes(digest[:8], "big", signed=True)},
        )
