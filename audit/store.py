"""`SqlAuditLog`: the audit log in SQL (SQLAlchemy Core), written in the caller's transaction.

The tables are described in `audit.store_tables`; the review index (terms an auditor searches
by, built after appends) lives in `audit.store_review`.

One writer at a time: on PostgreSQL `append`/`checkpoint` first take a transaction-scoped
advisory lock (key `AUDIT_LOCK_KEY`); on SQLite the engine must begin transactions with
`BEGIN IMMEDIATE`, which already serialises writers. Other databases are refused. An append
writes the entries and the perfect subtrees they complete, nothing else. Reads of roots and
proofs fetch O(log n) stored nodes in one query; `verify` recomputes everything.

An append needs the tree's right edge (a compact range) at the size it reads under the lock.
A log that follows its engine's commits (`follow_commits`) keeps the edge its process last
committed and uses it while the log still has that size; otherwise, and whenever a transaction
could not be seen to commit, it loads the edge from the stored nodes (one query).

Only the `audit.store*` modules know SQL (a test keeps SQLAlchemy out of every other module, so
the offline verifier never loads it).
"""

from __future__ import annotations

import base64
import functools
import hmac
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa

from audit import store_review
from audit.bundle import BundleEntry, write_bundle
from audit.checkpoint import (
    DASH,
    Checkpoint,
    KeyVerifier,
    NoteVerifier,
    Signer,
    open_checkpoint,
    sign_checkpoint,
    split_note,
)
from audit.errors import CheckpointError, EntryNotFoundError, StoreError, VerificationError
from audit.events import Event
from audit.merkle import EMPTY_ROOT
from audit.prepared import PreparedEvent, prepare
from audit.store_tables import (
    AUDIT_LOCK_KEY,
    EDGE_DIFFERS,
    SMALL_APPEND,
    append_if_size,
    checkpoints_table,
    cosignatures_table,
    driver_cursor,
    entries_table,
    insert_appended,
    insert_checkpoint,
    lock_and_size,
    log_size,
    metadata,
    nodes_table,
    terms_table,
)
from audit.tree import (
    CompactRange,
    NodeGetter,
    NodeId,
    consistency_proof,
    consistency_ranges,
    inclusion_proof,
    inclusion_ranges,
    perfect_nodes,
    root_from_nodes,
)
from audit.verify import CheckpointSet, VerifyReport, check_entry, open_checkpoints

__all__ = [
    "AUDIT_LOCK_KEY",
    "AppendResult",
    "SignedHead",
    "SqlAuditLog",
    "checkpoints_table",
    "entries_table",
    "metadata",
    "nodes_table",
    "terms_table",
]

_BATCH: Final = 1024  # entries per read while verifying / exporting (a power of two)
_EntryRow = sa.Row[Any, Any, Any, Any]  # idx, leaf_hash, body, event_type


CONCURRENT_APPEND: Final = (
    "another writer appended to the audit log concurrently; roll back and retry"
)
log = logging.getLogger("audit.store")


@functools.cache
def _nodes_query(slots: int) -> sa.Select[Any]:
    """SQLite: `WHERE (level = :l0 AND idx = :i0) OR …` with `slots` pairs, PK lookups (SQLite
    scans for a row-value IN list), one compiled statement per slot count."""
    n = nodes_table.c
    pairs = (
        sa.and_(n.level == sa.bindparam(f"l{i}"), n.idx == sa.bindparam(f"i{i}"))
        for i in range(slots)
    )
    return sa.select(n.level, n.idx, n.hash).where(sa.or_(*pairs))


@functools.cache
def _nodes_and_entry_query(slots: int) -> sa.CompoundSelect[Any]:
    """`_nodes_query` and the body of entry `:entry` as a row of level `ENTRY_LEVEL`."""
    e = entries_table.c
    body = sa.select(sa.literal(ENTRY_LEVEL), e.idx, e.body).where(e.idx == sa.bindparam("entry"))
    return sa.union_all(_nodes_query(slots), body)


# PostgreSQL: the nodes asked for, as two parallel arrays joined on the primary key.
# Run on the driver's cursor as a server-side prepared statement: a proof is one short query,
# and SQLAlchemy's statement handling cost more than the query itself.
_PG_NODES: Final = (
    "SELECT n.level, n.idx, n.hash FROM audit_nodes AS n "
    "JOIN unnest(%s::integer[], %s::bigint[]) AS k(level, idx) "
    "ON n.level = k.level AND n.idx = k.idx"
)
# An entry's body read with the nodes of its proof (a receipt: one query, not two), as a row
# of a level no node has.
ENTRY_LEVEL: Final = -1
_PG_NODES_AND_ENTRY: Final = (  # constants only: the index is bound
    f"{_PG_NODES} UNION ALL SELECT {ENTRY_LEVEL}, e.idx, e.body FROM audit_entries AS e "  # noqa: S608
    "WHERE e.idx = %s"
)


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where an appended event landed: its 0-based index and its leaf hash."""

    index: int
    leaf_hash: bytes


@dataclass(frozen=True, slots=True)
class SignedHead:
    """A stored checkpoint: its size and its signed note (with any witness cosignatures)."""

    size: int
    note: str


def _getter_of(nodes: dict[NodeId, bytes]) -> NodeGetter:
    def get(level: int, index: int) -> bytes:
        try:
            return nodes[NodeId(level, index)]
        except KeyError:
            raise StoreError(f"audit node ({level}, {index}) is missing") from None

    return get


def _now() -> datetime:
    return datetime.now(UTC)


def _expected_nodes(size: int) -> int:
    return sum(size >> level for level in range(size.bit_length()))


class SqlAuditLog:
    """The append-only Merkle log of one `origin`, signed by `signer`."""

    def __init__(
        self,
        *,
        origin: str,
        signer: Signer,
        retired: Sequence[NoteVerifier] = (),
        clock: Callable[[], datetime] = _now,
    ) -> None:
        Checkpoint(origin, 0, EMPTY_ROOT)  # validates the origin
        self.origin = origin
        self.signer = signer
        self.verifier: NoteVerifier = signer.verifier()
        # Keys that signed earlier checkpoints (rotated out): still trusted to verify them.
        self.verifiers: tuple[NoteVerifier, ...] = (
            self.verifier,
            *(v for v in retired if v != self.verifier),
        )
        self._clock = clock
        # The right edge as this process last committed it, and each open transaction's own
        # (promoted on its commit, dropped on a rollback): see `follow_commits`.
        self._edge: CompactRange | None = None
        self._pending: weakref.WeakKeyDictionary[sa.Connection, CompactRange] = (
            weakref.WeakKeyDictionary()
        )
        self._edge_lock = threading.Lock()
        self._followed: weakref.WeakSet[sa.Engine] = weakref.WeakSet()

    # -- the right edge in memory --------------------------------------------------------------

    def follow_commits(self, engine: sa.Engine) -> None:
        """Keep the right edge of every append committed through `engine`, so the next append
        (and a checkpoint's root) need not read it from the stored nodes. Call before the
        engine's first append: a transaction already open when this is called is not followed.

        The kept edge is used only while the log, read under the writers' lock, still has its
        size (nobody else appended since). An edge becomes the kept one when its transaction
        commits (SQLAlchemy's `commit` event, sent just before the database's COMMIT); a
        rollback, a rollback to a savepoint, or any database error on the engine (a failed
        COMMIT among them) forgets it, and the edge is then loaded again."""
        if engine in self._followed:
            return
        sa.event.listen(engine, "commit", self._committed)
        sa.event.listen(engine, "rollback", self._rolled_back)
        sa.event.listen(engine, "rollback_savepoint", self._rolled_back_savepoint)
        sa.event.listen(engine, "handle_error", self._failed)
        self._followed.add(engine)

    def _committed(self, conn: sa.Connection) -> None:
        with self._edge_lock:
            edge = self._pending.pop(conn, None)
            if edge is not None:
                self._edge = edge

    def _rolled_back(self, conn: sa.Connection) -> None:
        with self._edge_lock:
            self._pending.pop(conn, None)

    def _rolled_back_savepoint(self, conn: sa.Connection, _name: str, _context: Any) -> None:
        self._rolled_back(conn)

    def _failed(self, context: Any) -> None:
        with self._edge_lock:
            self._edge = None
            if context.connection is not None:
                self._pending.pop(context.connection, None)

    def _known_edge(self, conn: sa.Connection, size: int) -> CompactRange | None:
        """A copy of the edge of `size` leaves this process knows to be the log's: the one this
        transaction appended, or the last committed one."""
        with self._edge_lock:
            for edge in (self._pending.get(conn), self._edge):
                if edge is not None and edge.size == size:
                    return edge.copy()
        return None

    def _appended(self, conn: sa.Connection, tree: CompactRange) -> None:
        if conn.engine in self._followed:
            with self._edge_lock:
                self._pending[conn] = tree.copy()

    # -- writing ------------------------------------------------------------------------------

    def append(self, conn: sa.Connection, event: Event) -> AppendResult:
        """Append one event inside the caller's transaction; durable when the caller commits."""
        return self.append_many(conn, [event])[0]

    def append_many(
        self, conn: sa.Connection, events: Sequence[Event | PreparedEvent]
    ) -> list[AppendResult]:
        """Append events in order, with one lock and one multi-row insert per table."""
        prepared = [prepare(event) for event in events]  # refuse bad events before locking
        return self.append_prepared(conn, prepared)[0]

    def append_prepared(
        self,
        conn: sa.Connection,
        entries: Sequence[PreparedEvent],
        tail: CompactRange | None = None,
    ) -> tuple[list[AppendResult], CompactRange]:
        """Append prepared entries in order; also return the tree's new right edge.

        `tail` is the right edge an earlier call returned *and whose transaction committed*
        (the group committer keeps it between batches). It is used only if the log still has
        its size under the lock, i.e. nobody appended since; otherwise the edge is loaded from
        the stored nodes. The returned edge is a new object: keep it only once this
        transaction has committed.
        """
        if not entries:
            return [], tail if tail is not None else CompactRange()
        # The dialect's own format (SQLite stores text): comparisons bind the same format.
        column_type = entries_table.c.created_at.type.dialect_impl(conn.dialect)
        proc = column_type.bind_processor(conn.dialect)
        now = proc(self._clock()) if proc else self._clock()
        bet = self._bet(conn, entries, tail)
        trusted = True  # whether an edge kept in memory may serve for the size read
        if bet is not None:  # PostgreSQL, the edge known: lock, check and insert at once
            expected = bet.size
            nodes = perfect_nodes(0, expected)
            edge = [(n.level, n.idx, h) for n, h in zip(nodes, bet.hashes, strict=True)]
            results, entry_rows, node_rows = self._rows(bet, entries, now)  # `bet` grows
            try:
                size = append_if_size(conn, expected, edge, entry_rows, node_rows)
            except sa.exc.IntegrityError:
                raise StoreError(CONCURRENT_APPEND) from None
            if size == expected:
                self._appended(conn, bet)
                return results, bet
            if size == EDGE_DIFFERS:  # memory held an edge that is not the stored tree's
                log.warning("the audit log's edge in memory was not the stored one; reloaded")
                self._forget_edges(conn)
                size, trusted = expected, False
            # Otherwise another writer appended since that edge. The lock is held now.
        else:
            size = lock_and_size(conn, AUDIT_LOCK_KEY)
        if trusted and tail is not None and tail.size == size:
            tree = CompactRange(size, tail.hashes)
        else:
            known = self._known_edge(conn, size) if trusted else None
            tree = known or CompactRange.load(size, self._getter(conn, perfect_nodes(0, size)))
        results, entry_rows, node_rows = self._rows(tree, entries, now)
        try:
            insert_appended(conn, entry_rows, node_rows)
        except sa.exc.IntegrityError:
            raise StoreError(CONCURRENT_APPEND) from None
        self._appended(conn, tree)
        return results, tree

    def _forget_edges(self, conn: sa.Connection) -> None:
        """Drop the edges kept in memory (the last committed, this transaction's)."""
        with self._edge_lock:
            self._edge = None
            self._pending.pop(conn, None)

    def _bet(
        self,
        conn: sa.Connection,
        entries: Sequence[PreparedEvent],
        tail: CompactRange | None,
    ) -> CompactRange | None:
        """PostgreSQL, a small append: a copy of the edge the log most likely has (this
        transaction's own, else the newest committed here: `tail` or the last one followed),
        to append to in one round trip (`append_if_size`); None to lock and read the size
        first (no edge known, SQLite, or a batch large enough for `COPY`)."""
        if conn.dialect.name != "postgresql" or len(entries) > SMALL_APPEND // 8:
            return None
        with self._edge_lock:
            edge = self._pending.get(conn)
            if edge is None:
                known = [e for e in (tail, self._edge) if e is not None]
                edge = max(known, key=lambda e: e.size) if known else None
            return None if edge is None else edge.copy()

    @staticmethod
    def _rows(
        tree: CompactRange, entries: Sequence[PreparedEvent], now: Any
    ) -> tuple[list[AppendResult], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Append `entries` to `tree` (in place): what each got, and the rows to insert."""
        results: list[AppendResult] = []
        entry_rows: list[tuple[Any, ...]] = []
        node_rows: list[tuple[Any, ...]] = []
        for entry in entries:
            index = tree.size
            node_rows.extend((lv, ix, node) for (lv, ix), node in tree.append(entry.leaf_hash))
            entry_rows.append((index, entry.leaf_hash, entry.body, entry.type, now))
            results.append(AppendResult(index, entry.leaf_hash))
        return results, entry_rows, node_rows

    def checkpoint(self, conn: sa.Connection) -> str:
        """Sign the current head and store it (once per size); return the signed note."""
        return self.sign_head(conn).note

    def sign_head(self, conn: sa.Connection) -> SignedHead:
        """`checkpoint`, with the size it covers. The size is read once, under the writers'
        lock: a size read before the lock may be overtaken by an append committed in between
        (PostgreSQL READ COMMITTED), which would pair a proof for n with a checkpoint of n+1.
        After an append in the same transaction (a group commit's batch), the lock is held
        already and the size is the append's: nothing is read."""
        with self._edge_lock:
            mine = self._pending.get(conn)
        known: CompactRange | None
        if mine is not None:  # this transaction appended: it holds the lock, the size is known
            size, known = mine.size, mine.copy()
        else:
            size = lock_and_size(conn, AUDIT_LOCK_KEY)
            known = self._known_edge(conn, size)
        root = known.root() if known is not None else self.root(conn, size)
        # Signed and stored in one statement unless this size is stored already (then the
        # stored one, which must agree with the tree, is the answer: one note per size).
        note = sign_checkpoint(Checkpoint(self.origin, size, root), [self.signer])
        if insert_checkpoint(conn, size, root, note, self._clock()):
            return SignedHead(size, note)
        row = conn.execute(
            sa.select(checkpoints_table.c.root, checkpoints_table.c.note).where(
                checkpoints_table.c.size == size
            )
        ).one()
        if not hmac.compare_digest(bytes(row.root), root):
            raise StoreError(f"the stored checkpoint of size {size} disagrees with the tree")
        return SignedHead(size, str(row.note))

    # -- reading ------------------------------------------------------------------------------

    def size(self, conn: sa.Connection) -> int:
        return log_size(conn)

    def _nodes(
        self, conn: sa.Connection, ids: Iterable[NodeId], *, entry: int | None = None
    ) -> dict[NodeId, bytes]:
        """The stored nodes `ids` that exist; with `entry`, that entry's body too (if it
        exists), keyed `NodeId(ENTRY_LEVEL, entry)`, read in the same query."""
        keys = sorted({(level, index) for level, index in ids})
        if not keys and entry is None:
            return {}
        found: dict[NodeId, bytes] = {}
        if conn.dialect.name == "postgresql":  # one short statement the driver caches
            levels, indexes = zip(*keys, strict=True) if keys else ((), ())
            with driver_cursor(conn) as cursor:
                if entry is None:
                    cursor.execute(_PG_NODES, (list(levels), list(indexes)), prepare=True)
                else:
                    cursor.execute(
                        _PG_NODES_AND_ENTRY, (list(levels), list(indexes), entry), prepare=True
                    )
                rows = cursor.fetchall()
            return {NodeId(level, index): bytes(digest) for level, index, digest in rows}
        for start in range(0, max(1, len(keys)), 128):
            chunk = keys[start : start + 128] or [(0, -1)]  # no node has index -1
            slots = max(8, 1 << (len(chunk) - 1).bit_length())  # few statement shapes
            chunk += [chunk[-1]] * (slots - len(chunk))
            params: dict[str, int] = {}
            for i, (level, index) in enumerate(chunk):
                params[f"l{i}"], params[f"i{i}"] = level, index
            query: sa.Select[Any] | sa.CompoundSelect[Any] = _nodes_query(slots)
            if entry is not None and start == 0:
                query, params["entry"] = _nodes_and_entry_query(slots), entry
            for r in conn.execute(query, params):
                found[NodeId(int(r[0]), int(r[1]))] = bytes(r[2])
        return found

    def _getter(
        self, conn: sa.Connection, ids: Iterable[NodeId], *, within: int | None = None
    ) -> NodeGetter:
        """A getter over the stored nodes `ids`. With `within`, first make sure the log holds at
        least that many entries, in the same query: leaf `within - 1` is fetched too, and only
        when it is absent is the size read (to raise EntryNotFoundError)."""
        return _getter_of(self._fetch(conn, ids, within=within))

    def _fetch(
        self,
        conn: sa.Connection,
        ids: Iterable[NodeId],
        *,
        within: int | None = None,
        entry: int | None = None,
    ) -> dict[NodeId, bytes]:
        """`_nodes`, checking `within` as `_getter` says."""
        if within is not None and within < 0:
            self._within(conn, within)  # raises
        wanted = list(ids)
        last = NodeId(0, within - 1) if within else None
        nodes = self._nodes(conn, wanted if last is None else [*wanted, last], entry=entry)
        if last is not None and last not in nodes:
            self._within(conn, within or 0)
        return nodes

    def _within(self, conn: sa.Connection, size: int) -> None:
        current = self.size(conn)
        if not 0 <= size <= current:
            raise EntryNotFoundError(f"size {size} is beyond the log's size {current}")

    def root(self, conn: sa.Connection, size: int | None = None) -> bytes:
        """The Merkle root of the first `size` entries (default: all)."""
        if size is None:
            size = self.size(conn)
            return root_from_nodes(size, self._getter(conn, perfect_nodes(0, size)))
        return root_from_nodes(size, self._getter(conn, perfect_nodes(0, size), within=size))

    def entry(self, conn: sa.Connection, index: int) -> bytes:
        body = conn.execute(
            sa.select(entries_table.c.body).where(entries_table.c.idx == index)
        ).scalar()
        if body is None:
            raise EntryNotFoundError(f"no audit entry at index {index}")
        return bytes(body)

    def entries(self, conn: sa.Connection, start: int, stop: int) -> list[bytes]:
        """The bodies of the entries with start <= index < stop that exist (like a slice)."""
        if start < 0 or stop < 0:
            raise EntryNotFoundError("entry indexes are non-negative")
        e = entries_table.c
        rows = conn.execute(sa.select(e.body).where(e.idx >= start, e.idx < stop).order_by(e.idx))
        return [bytes(body) for body in rows.scalars()]

    def latest_checkpoint(self, conn: sa.Connection) -> str | None:
        head = self.latest_head(conn)
        return None if head is None else head.note

    def latest_head(self, conn: sa.Connection) -> SignedHead | None:
        """The largest stored checkpoint, with its witness cosignatures (no lock taken)."""
        c = checkpoints_table.c
        row = conn.execute(sa.select(c.size, c.note).order_by(c.size.desc()).limit(1)).first()
        if row is None:
            return None
        return SignedHead(int(row.size), self._with_cosignatures(conn, int(row.size), row.note))

    def _with_cosignatures(self, conn: sa.Connection, size: int, note: str) -> str:
        w = cosignatures_table.c
        lines = conn.execute(
            sa.select(w.line).where(w.size == size).order_by(w.key_name, w.key_hash)
        ).scalars()
        return str(note) + "".join(f"{line}\n" for line in lines)

    def add_cosignature(
        self, conn: sa.Connection, note: str, witnesses: Sequence[KeyVerifier]
    ) -> int:
        """Store the signatures by known `witnesses` on a copy of one of our checkpoints.

        The note must carry our valid signature and at least one valid witness signature
        (cosignature/v1 or, for legacy witness keys, a plain note signature); its text must be
        exactly a checkpoint we stored. Returns how many new cosignatures were stored.
        """
        try:
            cp = open_checkpoint(note, self.verifiers, self.origin)
            open_checkpoint(note, witnesses, self.origin)
            text, signatures = split_note(note)
        except CheckpointError as exc:
            raise StoreError(f"not a cosigned checkpoint of this log: {exc}") from None
        c = checkpoints_table.c
        row = conn.execute(sa.select(c.root, c.note).where(c.size == cp.size)).first()
        if (
            row is None
            or not hmac.compare_digest(bytes(row.root), cp.root)
            or split_note(str(row.note))[0] != text
        ):
            raise StoreError(f"the log stored no checkpoint of size {cp.size} with that text")
        known = {(v.name, v.key_hash): v for v in witnesses}
        stored = 0
        w = cosignatures_table.c
        for name, raw in signatures:
            if (name, raw[:4]) not in known:
                continue
            key = {"size": cp.size, "key_name": name, "key_hash": raw[:4].hex()}
            exists = conn.execute(
                sa.select(sa.func.count())
                .select_from(cosignatures_table)
                .where(*(getattr(w, k) == v for k, v in key.items()))
            ).scalar()
            if exists:
                continue
            line = f"{DASH}{name} {base64.b64encode(raw).decode('ascii')}"
            conn.execute(cosignatures_table.insert().values(**key, line=line, created_at=_now()))
            stored += 1
        return stored

    def inclusion_proof(self, conn: sa.Connection, index: int, size: int) -> list[bytes]:
        if size < 0:
            self._within(conn, size)
        ids = [n for r in inclusion_ranges(index, size) for n in perfect_nodes(*r)]
        return inclusion_proof(index, size, self._getter(conn, ids, within=size))

    def entry_and_proof(
        self, conn: sa.Connection, index: int, size: int
    ) -> tuple[bytes, list[bytes]]:
        """`entry(index)` and `inclusion_proof(index, size)`, read in one query (a receipt)."""
        if size < 0:
            self._within(conn, size)
        ids = [n for r in inclusion_ranges(index, size) for n in perfect_nodes(*r)]
        nodes = self._fetch(conn, ids, within=size, entry=index)
        body = nodes.pop(NodeId(ENTRY_LEVEL, index), None)
        if body is None:
            raise EntryNotFoundError(f"no audit entry at index {index}")
        return body, inclusion_proof(index, size, _getter_of(nodes))

    def consistency_proof(self, conn: sa.Connection, size1: int, size2: int) -> list[bytes]:
        if size2 < 0:
            self._within(conn, size2)
        ids = [n for r in consistency_ranges(size1, size2) for n in perfect_nodes(*r)]
        return consistency_proof(size1, size2, self._getter(conn, ids, within=size2))

    # -- whole-log operations -----------------------------------------------------------------

    def _batches(self, conn: sa.Connection, size: int) -> Iterator[list[_EntryRow]]:
        e = entries_table.c
        query = sa.select(e.idx, e.leaf_hash, e.body, e.event_type).order_by(e.idx)
        for start in range(0, size, _BATCH):
            yield list(conn.execute(query.where(e.idx >= start, e.idx < start + _BATCH)))

    def _completed_nodes(self, conn: sa.Connection, start: int, stop: int) -> dict[NodeId, bytes]:
        """Stored nodes whose last leaf is one of start..stop-1."""
        n = nodes_table.c
        levels = [lv for lv in range(stop.bit_length()) if start >> lv < stop >> lv]
        if not levels:
            return {}
        where = sa.or_(
            *(sa.and_(n.level == lv, n.idx.between(start >> lv, (stop >> lv) - 1)) for lv in levels)
        )
        rows = conn.execute(sa.select(n.level, n.idx, n.hash).where(where))
        return {NodeId(int(r.level), int(r.idx)): bytes(r.hash) for r in rows}

    def _signed(self, conn: sa.Connection) -> CheckpointSet:
        c = checkpoints_table.c
        stored = list(conn.execute(sa.select(c.size, c.root, c.note).order_by(c.size)))
        opened = open_checkpoints([r.note for r in stored], self.verifiers, self.origin)
        for row, cp in zip(stored, opened, strict=True):
            if cp.size != row.size or not hmac.compare_digest(cp.root, bytes(row.root)):
                raise VerificationError(f"checkpoint row {row.size} does not match its note")
        return CheckpointSet(opened)

    def verify(self, conn: sa.Connection) -> VerifyReport:
        """Recompute every leaf, node, root and checkpoint; VerificationError on a mismatch."""
        size, signed, tree = self.size(conn), self._signed(conn), CompactRange()
        signed.check(0, EMPTY_ROOT)
        for rows in self._batches(conn, size):
            if not rows:
                raise VerificationError(f"audit entry {tree.size} is missing", index=tree.size)
            nodes = self._completed_nodes(conn, tree.size, int(rows[-1].idx) + 1)
            for row in rows:
                index, digest = tree.size, bytes(row.leaf_hash)
                kind = check_entry(index, int(row.idx), bytes(row.body), digest)
                if kind != row.event_type:
                    raise VerificationError(f"entry {index} has the wrong event_type", index=index)
                for node_id, expected in tree.append(digest):
                    if not hmac.compare_digest(nodes.get(node_id, b""), expected):
                        raise VerificationError(f"stored node {tuple(node_id)} is missing or wrong")
                if tree.size in signed:
                    signed.check(tree.size, tree.root())
        signed.finish(tree.size)
        count = conn.execute(sa.select(sa.func.count()).select_from(nodes_table)).scalar()
        if count != _expected_nodes(size):
            raise VerificationError(
                f"audit_nodes holds {count} rows; {size} entries need {_expected_nodes(size)}"
            )
        return VerifyReport(size, tree.root(), signed.count, signed.signed_size)

    def export_bundle(self, conn: sa.Connection, path: str | os.PathLike[str]) -> int:
        """Write every entry (streamed), every checkpoint (with its witness cosignatures) and
        this log's vkeys (current and retired) as a bundle."""
        c = checkpoints_table.c
        rows = conn.execute(sa.select(c.size, c.note).order_by(c.size)).all()
        notes = [self._with_cosignatures(conn, int(r.size), str(r.note)) for r in rows]
        size = self.size(conn)
        entries = (
            BundleEntry(int(r.idx), bytes(r.body), bytes(r.leaf_hash))
            for batch in self._batches(conn, size)
            for r in batch
        )
        return write_bundle(path, entries, notes, [v.vkey for v in self.verifiers])

    # -- review -------------------------------------------------------------------------------

    def query(
        self,
        conn: sa.Connection,
        *,
        terms: Sequence[str] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        after: int = -1,
        limit: int = 100,
        descending: bool = False,
    ) -> list[tuple[int, bytes]]:
        """Entries (index, body) carrying every one of `terms` (see `audit.terms`), appended in
        [since, until), with index > `after` (or < `after` when descending), at most `limit`;
        complete whether or not the review index has caught up (`audit.store_review`)."""
        return store_review.query(
            conn,
            terms=terms,
            since=since,
            until=until,
            after=after,
            limit=limit,
            descending=descending,
        )

    def index_terms(self, conn: sa.Connection, limit: int = 256) -> tuple[int, int]:
        """Index the review terms of up to `limit` more entries, in order; return how many were
        indexed and how many remain (the group committer calls this when appends are idle)."""
        return store_review.index_terms(conn, limit)
