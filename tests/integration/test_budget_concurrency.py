"""The done-criterion end to end: 60 parallel `dp` job submissions costing ρ 0.1 against a cap
of 1.0 — over HTTP, on SQLite and PostgreSQL — release exactly 10; the rest get 429."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.demo import documents
from gateway.store import schema
from tests.integration.conftest import Caller, World
from tests.integration.test_dp_jobs import DP_TEMPLATE, SUBMIT

CAP_ONE = """\
privacy:
  budget: {rho_per_department: 1.0, rho_total: 1.0, refresh: monthly}
"""


@pytest.mark.slow
def test_sixty_parallel_dp_jobs_of_a_tenth_against_a_cap_of_one_release_exactly_ten(
    world: World, owners: dict[str, Caller], analyst: Caller
) -> None:
    assert (
        owners["civil"].post_yaml("/v1/datasets", documents.RESIDENTS + CAP_ONE).status_code == 201
    )
    proposed = analyst.post_yaml("/v1/templates", DP_TEMPLATE)
    assert proposed.status_code == 201, proposed.text
    approved = owners["civil"].post(
        "/v1/templates/residents-dp/versions/1/approvals",
        json={"content_hash": proposed.json()["content_hash"]},
    )
    assert approved.status_code == 201, approved.text

    def submit(_: int) -> int:
        return analyst.post("/v1/jobs", json=SUBMIT).status_code

    with ThreadPoolExecutor(max_workers=60) as pool:
        codes = list(pool.map(submit, range(60)))
    assert sorted(set(codes)) == [202, 429]
    assert codes.count(202) == 10

    engine = sa.create_engine(world.settings.resolved_database_url)
    try:
        with engine.connect() as conn:
            jobs = conn.execute(sa.select(schema.jobs.c.id)).all()
            budget = conn.execute(sa.select(schema.privacy_budgets)).all()
    finally:
        engine.dispose()
    assert len(jobs) == 10
    for row in budget:
        assert row.rho_cap == 1_000_000
        assert row.rho_spent + row.rho_reserved == 1_000_000
        assert row.rho_spent >= 0 and row.rho_reserved >= 0
    released: list[dict[str, Any]] = [
        analyst.get(f"/v1/jobs/{job.id}/result", params={"wait": 60}).json() for job in jobs
    ]
    assert [b["status"] for b in released] == ["released"] * 10
    engine = sa.create_engine(world.settings.resolved_database_url)
    try:
        with engine.connect() as conn:
            settled = conn.execute(sa.select(schema.privacy_budgets)).all()
    finally:
        engine.dispose()
    assert {(r.rho_spent, r.rho_reserved) for r in settled} == {(1_000_000, 0)}
