"""The catalogue held in memory: template versions, dataset documents, responsible parties.

Every job used to read its template version, its approvals and each dataset document twice
(submission and the worker's re-check) and the approvals again at release. They change rarely,
so each replica keeps them in memory, keyed by what was asked, and trusts them only while the
`catalogue_version` row says nothing changed: every change to datasets, templates or approvals
calls `bump(conn)` in its own transaction, and every use reads that one row first
(`current`). The answer is therefore exactly what a fresh read would give, on every replica:
a retirement or a new approval is seen by the very next job anywhere, not after an interval.

A load that raced a change is kept under the version read *before* it, so it is dropped at the
next look (never served as newer than it is).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import TypeVar

import sqlalchemy as sa

from gateway.store import schema

NAME = "catalogue"
T = TypeVar("T")


def bump(conn: sa.Connection) -> None:
    """Mark the catalogue changed, in the caller's transaction (commits with the change)."""
    v = schema.catalogue_version.c
    conn.execute(
        schema.catalogue_version.update().where(v.name == NAME).values(version=v.version + 1)
    )


def version(conn: sa.Connection) -> int:
    v = schema.catalogue_version.c
    value = conn.execute(sa.select(v.version).where(v.name == NAME)).scalar()
    # No row (a store created without the migration): never trust the cache.
    return -1 if value is None else int(value)


class CatalogueCache:
    """Values computed from the catalogue, valid for one catalogue version."""

    def __init__(self, max_entries: int = 4096) -> None:
        self._lock = threading.Lock()
        self._version = -1
        self._values: dict[Hashable, object] = {}
        self._max = max_entries

    def current(self, conn: sa.Connection) -> int:
        """Read the version and drop everything computed under another one."""
        seen = version(conn)
        with self._lock:
            if seen > self._version or seen < 0:
                self._values.clear()
                self._version = seen
        return seen

    def get(self, seen: int, key: Hashable, load: Callable[[], T]) -> T:
        """The value for `key` under version `seen` (from `current`), loaded once."""
        with self._lock:
            if seen == self._version and key in self._values:
                return self._values[key]  # type: ignore[return-value]
        value = load()
        with self._lock:
            if seen == self._version and seen >= 0:
                if len(self._values) >= self._max:
                    self._values.clear()
                self._values[key] = value
        return value
