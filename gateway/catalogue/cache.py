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

The stored dataset profiles are versioned too, by a row of their own (`PROFILES`, bumped by
every profile stored): the version a use reads is the sum of both rows, in the same one
statement, so the worker's profile lookups are served from memory while no profile was added
(`gateway.quality.snapshots`). Their own row because a profile is stored after its audit
entry: bumping the catalogue's row there would take it after the audit log's lock, the
reverse of every catalogue change (row, then log), and two such transactions could deadlock
on PostgreSQL.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import sqlalchemy as sa

from gateway.store import db, schema

NAME = "catalogue"
PROFILES = "profiles"  # made by its first bump (stores from before it have no such row)
T = TypeVar("T")


def bump(conn: sa.Connection) -> None:
    """Mark the catalogue changed, in the caller's transaction (commits with the change)."""
    v = schema.catalogue_version.c
    conn.execute(
        schema.catalogue_version.update().where(v.name == NAME).values(version=v.version + 1)
    )


def bump_profiles(conn: sa.Connection) -> None:
    """Mark the stored profiles changed, in the caller's transaction (with the new profile)."""
    table = schema.catalogue_version
    statement = db.upsert(conn.dialect.name, table).values(name=PROFILES, version=1)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[table.c.name], set_={"version": table.c.version + 1}
        )
    )


def _row(name: str) -> sa.ScalarSelect[int]:
    v = schema.catalogue_version.c
    return sa.select(v.version).where(v.name == name).scalar_subquery()


@functools.cache
def version_columns() -> tuple[sa.Label[int], sa.Label[int]]:
    """The version as two columns another statement may return beside its own (`version_of`
    reads them off its row): the worker's claim takes it so, instead of a query of its own."""
    return _row(NAME).label("catalogue_seen"), _row(PROFILES).label("profiles_seen")


def version_of(row: Any) -> int:
    """The version from a row holding `version_columns()`."""
    if row.catalogue_seen is None:  # a store created without the migration: never trust
        return -1
    return int(row.catalogue_seen) + int(row.profiles_seen or 0)


def version(conn: sa.Connection) -> int:
    """The catalogue's version plus the profiles': a change to either raises it."""
    return version_of(conn.execute(sa.select(*version_columns())).one())


class CatalogueCache:
    """Values computed from the catalogue, valid for one catalogue version."""

    def __init__(self, max_entries: int = 4096) -> None:
        self._lock = threading.Lock()
        self._version = -1
        self._values: dict[Hashable, object] = {}
        self._max = max_entries

    def current(self, conn: sa.Connection) -> int:
        """Read the version and drop everything computed under another one."""
        return self.observe(version(conn))

    def observe(self, seen: int) -> int:
        """`current` with a version read by another statement (`version_columns`), in a
        transaction that began after whatever the version must not miss."""
        with self._lock:
            if seen > self._version or seen < 0:
                self._values.clear()
                self._version = seen
        return seen

    def get(
        self,
        seen: int,
        key: Hashable,
        load: Callable[[], T],
        *,
        keep: Callable[[T], bool] | None = None,
    ) -> T:
        """The value for `key` under version `seen` (from `current`), loaded once (a value
        `keep` refuses is returned, not kept: loaded again next time)."""
        with self._lock:
            if seen == self._version and key in self._values:
                return self._values[key]  # type: ignore[return-value]
        value = load()
        if keep is not None and not keep(value):
            return value
        with self._lock:
            if seen == self._version and seen >= 0:
                if len(self._values) >= self._max:
                    self._values.clear()
                self._values[key] = value
        return value
