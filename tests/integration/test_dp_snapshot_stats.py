"""Snapshot-verified contribution statistics through the real app: recorded once per settled
snapshot (SQLite and PostgreSQL), reused, and never trusted for a rewritten file."""

from __future__ import annotations

import os
import time

import pytest
import sqlalchemy as sa

from gateway.store import schema
from sandbox import TableSource
from sandbox.dp.snapshot import SETTLE_NS, fingerprint
from tests.integration.conftest import Caller, World
from tests.integration.test_dp_review import (
    COUNT_TEMPLATE,
    PRIVACY,
    _approve,
    _residents_in_four_districts,
    _run,
    _write,
)


def _stats(world: World) -> list[tuple[str, int]]:
    s = schema.dp_unit_stats
    with world.app.state.gateway.db.connect() as conn:
        return [
            (r.snapshot, r.max_rows) for r in conn.execute(sa.select(s.c.snapshot, s.c.max_rows))
        ]


@pytest.mark.slow
def test_a_statistic_is_recorded_once_per_snapshot_and_a_rewrite_stays_bounded(
    world: World, owners: dict[str, Caller], analyst: Caller
) -> None:
    path = world.settings.data_dir / "civil" / "residents.parquet"
    _write(path, [f"p{i:04d}" for i in range(200)])
    r = owners["civil"].post_yaml("/v1/datasets", _residents_in_four_districts() + PRIVACY)
    assert r.status_code == 201, r.text
    _approve(owners["civil"], analyst, COUNT_TEMPLATE, "residents-count-dp")
    time.sleep(SETTLE_NS / 1e9 + 0.1)
    snapshot = fingerprint(TableSource("civil.residents", "parquet", path), "person_id")
    for _ in range(2):  # the first measures, the second may take the fast path
        released = _run(analyst, "residents-count-dp")
        assert released["status"] == "released", released
        assert sum(row[1] for row in released["rows"]) > 150  # 200 people, σ ≈ 0.1
        assert _stats(world) == [(snapshot, 1)]
    stat = path.stat()
    _write(path, ["p0000"] * 200)  # one person, 200 rows; same size, mtime put back
    assert path.stat().st_size == stat.st_size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    time.sleep(SETTLE_NS / 1e9 + 0.1)
    for _ in range(2):
        second = _run(analyst, "residents-count-dp")
        assert second["status"] == "released", second
        assert sum(row[1] for row in second["rows"]) < 5  # one row of one person, not 200
    rewritten = fingerprint(TableSource("civil.residents", "parquet", path), "person_id")
    assert rewritten != snapshot
    assert sorted(_stats(world)) == sorted([(snapshot, 1), (rewritten, 200)])
