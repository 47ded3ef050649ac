"""The review index: the terms each entry can be found by, built after the entry is durable.

Appending writes only what the log's integrity needs (entries and tree nodes). The terms an
auditor searches by (`audit.terms`) are derived from the stored bodies and indexed afterwards,
in index order, by `index_terms`; the group committer runs it whenever no append is waiting (and
a step between batches when the index falls far behind). `audit_index` records how many entries
are indexed: entries below that size have their terms in `audit_terms`, later ones are read and
matched by `query` itself, so an answer never depends on how far the index got.

An entry whose body does not decode is found by no term (the log's verification reports it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa

from audit.errors import EventError
from audit.events import decode
from audit.store_tables import (
    INDEX_LOCK_KEY,
    entries_table,
    index_table,
    insert_many,
    lock,
    log_size,
    terms_table,
)
from audit.terms import terms_of

__all__ = ["TERMS", "index_terms", "indexed_size", "query"]

TERMS: Final = "terms"  # the index's row in audit_index
_PAGE: Final = 512  # entries read per step while matching the unindexed tail

log = logging.getLogger("audit.store_review")


def _terms(index: int, body: bytes) -> list[str]:
    try:
        return terms_of(decode(body))
    except EventError:
        log.warning("audit entry %d does not decode; it is left out of the review index", index)
        return []


def indexed_size(conn: sa.Connection) -> int:
    """How many entries (from index 0) have their terms in the index."""
    size = conn.execute(sa.select(index_table.c.size).where(index_table.c.name == TERMS)).scalar()
    return 0 if size is None else int(size)


def index_terms(conn: sa.Connection, limit: int) -> tuple[int, int]:
    """Index up to `limit` entries after the indexed prefix; return (indexed, still pending).

    Runs in the caller's transaction under its own lock (appends are not blocked on
    PostgreSQL); entries are visible only once committed, and commits happen in index order,
    so the entries read here are a gapless continuation of the prefix.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    lock(conn, INDEX_LOCK_KEY)
    start = indexed_size(conn)
    e = entries_table.c
    rows = conn.execute(
        sa.select(e.idx, e.body).where(e.idx >= start, e.idx < start + limit).order_by(e.idx)
    ).all()
    reached, found = start, list[tuple[str, int]]()
    for row in rows:
        if int(row.idx) != reached:  # a gap cannot be committed; stop before it regardless
            break
        found.extend((t, reached) for t in _terms(reached, bytes(row.body)))
        reached += 1
    if reached > start:
        insert_many(conn, terms_table, found)
        moved = conn.execute(
            index_table.update().where(index_table.c.name == TERMS).values(size=reached)
        ).rowcount
        if not moved:
            conn.execute(index_table.insert().values(name=TERMS, size=reached))
    return reached - start, log_size(conn) - reached


def query(
    conn: sa.Connection,
    *,
    terms: Sequence[str],
    since: datetime | None,
    until: datetime | None,
    after: int,
    limit: int,
    descending: bool,
) -> list[tuple[int, bytes]]:
    """See `SqlAuditLog.query`: the indexed prefix through `audit_terms`, the rest by reading."""
    e = entries_table.c
    base = sa.select(e.idx, e.body)
    if since is not None:
        base = base.where(e.created_at >= since)
    if until is not None:
        base = base.where(e.created_at < until)
    if descending:
        base = base.where(e.idx < after) if after >= 0 else base
    else:
        base = base.where(e.idx > after)
    order = e.idx.desc() if descending else e.idx
    if not terms or limit <= 0:
        rows = conn.execute(base.order_by(order).limit(max(limit, 0)))
        return [(int(r.idx), bytes(r.body)) for r in rows]
    mark = indexed_size(conn)
    indexed = base.where(e.idx < mark)
    for t in terms:
        alias = terms_table.alias()
        indexed = indexed.where(sa.exists().where(alias.c.term == t, alias.c.idx == e.idx))

    def from_index(n: int) -> list[tuple[int, bytes]]:
        rows = conn.execute(indexed.order_by(order).limit(n))
        return [(int(r.idx), bytes(r.body)) for r in rows]

    def from_tail(n: int) -> list[tuple[int, bytes]]:
        wanted, out = set(terms), []
        for index, body in _tail(conn, base.where(e.idx >= mark), descending):
            if wanted.issubset(_terms(index, body)):
                out.append((index, body))
                if len(out) == n:
                    break
        return out

    first, second = (from_tail, from_index) if descending else (from_index, from_tail)
    found = first(limit)
    return found if len(found) >= limit else found + second(limit - len(found))


def _tail(
    conn: sa.Connection, select: sa.Select[Any], descending: bool
) -> Iterator[tuple[int, bytes]]:
    """The rows of `select` in index order (or reversed), read a page at a time."""
    e = entries_table.c
    last: int | None = None
    while True:
        page = select
        if last is not None:
            page = page.where(e.idx < last if descending else e.idx > last)
        rows = conn.execute(page.order_by(e.idx.desc() if descending else e.idx).limit(_PAGE)).all()
        for row in rows:
            yield int(row.idx), bytes(row.body)
        if len(rows) < _PAGE:
            return
        last = int(rows[-1].idx)
