"""The `dataset_profiles` table: one row per profiled snapshot (counts and rates only)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from gateway.catalogue import cache as catalogue_cache
from gateway.errors import NotFound
from gateway.store import schema

P = schema.dataset_profiles.c


def insert(conn: sa.Connection, row: dict[str, Any]) -> None:
    """Store a profile, and bump the profiles' version with it: a worker trusts the profile it
    remembers for a file's fingerprint only while that version holds (`snapshots`), and a
    newer row for the same fingerprint (the same file snapshotted again) replaces its verdict."""
    conn.execute(schema.dataset_profiles.insert().values(**row, created_at=datetime.now(UTC)))
    catalogue_cache.bump_profiles(conn)


def _view(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "dataset": row.dataset_id,
        "fingerprint": row.fingerprint,
        "trigger": row.trigger,
        "status": row.status,
        "snapshot_at": row.snapshot_at.isoformat(),
        "created_at": row.created_at.isoformat(),
        "profile": row.profile,
        "checks": row.checks,
        "freshness": row.freshness,
        "drift": row.drift,
    }


def latest(
    conn: sa.Connection, dataset_id: str, *, status: str | None = None
) -> dict[str, Any] | None:
    query = sa.select(schema.dataset_profiles).where(P.dataset_id == dataset_id)
    if status is not None:
        query = query.where(P.status == status)
    row = conn.execute(query.order_by(P.created_at.desc(), P.id).limit(1)).first()
    return None if row is None else _view(row)


def by_fingerprint(conn: sa.Connection, dataset_id: str, fingerprint: str) -> dict[str, Any] | None:
    row = conn.execute(
        sa.select(schema.dataset_profiles)
        .where(P.dataset_id == dataset_id, P.fingerprint == fingerprint)
        .order_by(P.created_at.desc())
        .limit(1)
    ).first()
    return None if row is None else _view(row)


def history(conn: sa.Connection, dataset_id: str, limit: int = 20) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(schema.dataset_profiles)
        .where(P.dataset_id == dataset_id)
        .order_by(P.created_at.desc(), P.id)
        .limit(limit)
    ).all()
    return [summary(_view(r)) for r in rows]


def get(conn: sa.Connection, profile_id: str) -> dict[str, Any]:
    row = conn.execute(sa.select(schema.dataset_profiles).where(P.id == profile_id)).first()
    if row is None:
        raise NotFound("no such profile")
    return _view(row)


def summary(view: dict[str, Any]) -> dict[str, Any]:
    """What the catalogue shows of a profile: its verdict, not its columns."""
    failing = [c for c in view["checks"] if not c["ok"]]
    return {
        "profile": view["id"],
        "status": view["status"],
        "created_at": view["created_at"],
        "rows": view["profile"]["rows"],
        "freshness": view["freshness"]["state"],
        "rules": len(view["checks"]),
        "failing_must": [_label(c) for c in failing if c["severity"] == "must"],
        "failing_should": [_label(c) for c in failing if c["severity"] == "should"],
        "drift_flagged": bool(view["drift"] and view["drift"]["flagged"]),
    }


def _label(check: dict[str, Any]) -> str:
    cols = ",".join(check["columns"])
    return f"{check['rule']}({cols})" if cols else check["rule"]


def summaries(conn: sa.Connection) -> dict[str, dict[str, Any]]:
    """The newest profile's summary per dataset."""
    newest = (
        sa.select(P.dataset_id, sa.func.max(P.created_at).label("at"))
        .group_by(P.dataset_id)
        .subquery()
    )
    rows = conn.execute(
        sa.select(schema.dataset_profiles).join(
            newest, sa.and_(P.dataset_id == newest.c.dataset_id, P.created_at == newest.c.at)
        )
    ).all()
    return {r.dataset_id: summary(_view(r)) for r in rows}
