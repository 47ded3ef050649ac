"""Stored contribution statistics of source snapshots (`dp_unit_stats`), for the dp fast path.

The sandbox measures, in the process that reads the data, the most rows any privacy unit has
in one fingerprinted snapshot (`sandbox.dp.snapshot`); the gateway keeps it here so later
jobs on the same snapshot, on any replica, can skip per-unit windows that would be no-ops.
A row only ever matches the very snapshot it was measured on: the key is the fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from gateway.store import db, schema

KEEP_PER_DATASET = 8  # snapshots kept per (dataset, unit); older ones can never match again


@dataclass(frozen=True, slots=True)
class UnitStats:
    max_rows: int  # the most rows any non-NULL unit has
    null_rows: int  # rows whose unit is NULL


def lookup(engine: sa.Engine, snapshot: str) -> UnitStats | None:
    """The stored statistics of ``snapshot``, or None."""
    s = schema.dp_unit_stats
    with db.reading(engine) as conn:
        row = conn.execute(
            sa.select(s.c.max_rows, s.c.null_rows).where(s.c.snapshot == snapshot)
        ).first()
    if row is None or type(row.max_rows) is not int or type(row.null_rows) is not int:
        return None
    return UnitStats(row.max_rows, row.null_rows)


def record(
    engine: sa.Engine, *, snapshot: str, dataset_id: str, unit: str, stats: UnitStats
) -> None:
    """Store a measured statistic (a second measurement of the same snapshot is ignored)."""
    s = schema.dp_unit_stats
    with engine.begin() as conn:
        insert = db.upsert(conn.dialect.name, s)
        conn.execute(
            insert.values(
                snapshot=snapshot,
                dataset_id=dataset_id,
                unit_column=unit,
                max_rows=stats.max_rows,
                null_rows=stats.null_rows,
                created_at=datetime.now(UTC),
            ).on_conflict_do_nothing(index_elements=[s.c.snapshot])
        )
        old = (
            sa.select(s.c.snapshot)
            .where(s.c.dataset_id == dataset_id, s.c.unit_column == unit)
            .order_by(s.c.created_at.desc(), s.c.snapshot)
            .offset(KEEP_PER_DATASET)
        )
        stale = [row.snapshot for row in conn.execute(old)]
        if stale:
            conn.execute(s.delete().where(s.c.snapshot.in_(stale)))
