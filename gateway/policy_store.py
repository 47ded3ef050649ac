"""Policy versions in the database, and the live `PolicyEngine` built from the newest one.

Replicas and workers re-read the newest version number at most every `refresh_s` seconds, so a
change made anywhere is live everywhere within that interval.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa

from gateway import schema
from gateway.errors import Unavailable
from policies import PolicyEngine, Rule, format_rules, parse_rules


def newest_version(conn: sa.Connection) -> int | None:
    value = conn.execute(sa.select(sa.func.max(schema.policy_versions.c.version))).scalar()
    return None if value is None else int(value)


def save_version(conn: sa.Connection, rules: Sequence[Rule], *, created_by: str, note: str) -> int:
    version = (newest_version(conn) or 0) + 1
    conn.execute(
        schema.policy_versions.insert().values(
            version=version,
            rules=format_rules(rules),
            created_by=created_by,
            created_at=datetime.now(UTC),
            note=note,
        )
    )
    return version


def load_engine(conn: sa.Connection, version: int) -> PolicyEngine:
    text = conn.execute(
        sa.select(schema.policy_versions.c.rules).where(schema.policy_versions.c.version == version)
    ).scalar_one()
    return PolicyEngine.from_rules(parse_rules(text), version=version)


class LivePolicy:
    """The engine of the newest policy version, refreshed when another writer adds one."""

    def __init__(self, engine: sa.Engine, *, refresh_s: float = 2.0) -> None:
        self._db = engine
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._checked = 0.0
        with engine.connect() as conn:
            version = newest_version(conn)
            if version is None:
                raise Unavailable("the store has no policy; run `insitu init`")
            self._engine = load_engine(conn, version)

    def current(self) -> PolicyEngine:
        now = time.monotonic()
        if now - self._checked < self._refresh_s:
            return self._engine
        with self._lock:
            if now - self._checked >= self._refresh_s:
                with self._db.connect() as conn:
                    version = newest_version(conn)
                    if version is not None and version != self._engine.version:
                        self._engine = load_engine(conn, version)
                self._checked = now
        return self._engine
