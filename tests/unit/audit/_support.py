"""Helpers shared by the audit unit tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from audit import Actor, Event, leaf_hash, root_from_leaf_hashes
from audit.tree import NodeGetter

ORIGIN = "insitu.test/audit"
T0 = datetime(2026, 11, 22, 6, 36, tzinfo=UTC)


def make_engine(url: str) -> sa.Engine:
    """An engine as the gateway builds it: SQLite writers serialised by BEGIN IMMEDIATE."""
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_size=10)
    engine = sa.create_engine(url)

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy's BEGIN below do the work
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def make_event(n: int = 0, **overrides: Any) -> Event:
    fields: dict[str, Any] = {
        "type": "job.accepted",
        "time": T0 + timedelta(seconds=n),
        "actor": Actor("analyst-1", "tax", ("analyst",)),
        "action": "submit",
        "target": f"job:{n}",
        "allowed": True,
        "rule": "p, analyst, tax, template, submit",
        "reason": None,
        "details": {"n": n, "parameters": "hmac-sha256:00"},
    }
    fields.update(overrides)
    return Event(**fields)


def tree_of(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def getter(hashes: list[bytes]) -> NodeGetter:
    def get(level: int, index: int) -> bytes:
        width = 1 << level
        chunk = hashes[index * width : (index + 1) * width]
        assert len(chunk) == width, "asked for an incomplete subtree"
        return root_from_leaf_hashes(chunk)

    return get
