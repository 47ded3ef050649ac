"""Hostile review of dp releases through the real app (fast path, finish races, 429 body)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from audit.store import entries_table
from gateway.demo import documents
from gateway.jobs import worker
from gateway.store import schema
from tests.integration.conftest import Caller, World, expire_lease

PRIVACY = """\
privacy:
  budget: {rho_per_department: 1000, rho_total: 10000, refresh: monthly}
"""


def _residents_in_four_districts() -> str:
    """The residents document with the districts these tests write (d0-d3) declared."""
    doc = documents.RESIDENTS
    start, end = doc.index("  - name: district\n"), doc.index("  - {name: birth_year")
    district = (
        "  - {name: district, type: VARCHAR, sensitivity: public, values: [d0, d1, d2, d3]}\n"
    )
    return doc[:start] + district + doc[end:]


COUNT_TEMPLATE = """\
id: residents-count-dp
version: 1
kind: dp
title: Residents by district (DP), sharp noise
datasets: [civil.residents]
dp:
  bounds: {rows_per_unit: 1}
  group_by: {columns: [district], keys: public}
  measures: [{name: residents, kind: count}]
  cost: {rho: 50}
"""


def _write(path: Path, ids: list[str]) -> None:
    n = len(ids)
    table = pa.table(
        {
            "person_id": pa.array(ids, pa.string()),
            "district": pa.array([f"d{i % 4}" for i in range(n)], pa.string()),
            "birth_year": pa.array([1970] * n, pa.int32()),
            "sex": pa.array(["f"] * n, pa.string()),
            "household_size": pa.array([2] * n, pa.int32()),
            "monthly_income": pa.array([1000] * n, pa.int64()),
        }
    )
    pq.write_table(table, path, compression="none", use_dictionary=False, write_statistics=False)


def _approve(owner: Caller, analyst: Caller, doc: str, template_id: str) -> None:
    proposed = analyst.post_yaml("/v1/templates", doc)
    assert proposed.status_code == 201, proposed.text
    r = owner.post(
        f"/v1/templates/{template_id}/versions/1/approvals",
        json={"content_hash": proposed.json()["content_hash"]},
    )
    assert r.status_code == 201, r.text


def _run(analyst: Caller, template_id: str) -> dict[str, Any]:
    submitted = analyst.post("/v1/jobs", json={"template": template_id, "purpose": "planning"})
    assert submitted.status_code == 202, submitted.text
    result = analyst.get(f"/v1/jobs/{submitted.json()['id']}/result", params={"wait": 60})
    assert result.status_code == 200, result.text
    out: dict[str, Any] = result.json()
    return out


def test_a_file_rewritten_with_the_same_size_and_mtime_is_still_bounded_per_unit(
    world: World, owners: dict[str, Caller], analyst: Caller
) -> None:
    """The source first has one row per person, then (same size, mtime put back) 200 rows of
    one person. Each release must still count that person at most once per the template's
    rows_per_unit: a profile cached on path+mtime+size would run the plan unbounded."""
    path = world.settings.data_dir / "civil" / "residents.parquet"
    _write(path, [f"p{i:04d}" for i in range(200)])
    r = owners["civil"].post_yaml("/v1/datasets", _residents_in_four_districts() + PRIVACY)
    assert r.status_code == 201, r.text
    _approve(owners["civil"], analyst, COUNT_TEMPLATE, "residents-count-dp")
    first = _run(analyst, "residents-count-dp")
    assert first["status"] == "released", first
    assert sum(row[1] for row in first["rows"]) > 150  # 200 people, noise σ ≈ 0.1
    stat = path.stat()
    _write(path, ["p0000"] * 200)  # one person, 200 rows in 4 districts
    assert path.stat().st_size == stat.st_size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = _run(analyst, "residents-count-dp")
    assert second["status"] == "released", second
    assert sum(row[1] for row in second["rows"]) < 5  # one row of one person, not 200


def test_a_reclaimed_job_is_released_once_and_charged_once(
    world: World, owners: dict[str, Caller], analyst: Caller
) -> None:
    """A worker that outlives its lease finishes after another replica reclaimed the job: its
    late result is dropped (not stored, not charged); the reclaiming run releases the job and
    commits the reservation exactly once."""
    gw = world.app.state.gateway
    world.app.state.pool.stop()
    r = owners["civil"].post_yaml("/v1/datasets", _residents_in_four_districts() + PRIVACY)
    assert r.status_code == 201, r.text
    _approve(owners["civil"], analyst, COUNT_TEMPLATE, "residents-count-dp")
    submitted = analyst.post("/v1/jobs", json={"template": "residents-count-dp"})
    assert submitted.status_code == 202, submitted.text
    job = worker.claim_next(gw, "slow-worker")
    assert job is not None and job.id == submitted.json()["id"] and job.attempts == 1
    assert worker.claim_next(gw, "other-replica") is None  # the lease holds
    outcome = worker.Runner(gw).execute(job)
    assert outcome.result is not None
    expire_lease(gw, job.id)
    again = worker.claim_next(gw, "other-replica")
    assert again is not None and again.id == job.id and again.attempts == 2
    worker.finish(gw, job, outcome)  # the slow worker, late: dropped
    with gw.db.connect() as conn:
        assert conn.execute(sa.select(schema.budget_reservations)).one().status == "reserved"
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(schema.job_results)).scalar() == 0
        )
    worker.Runner(gw).run(again)
    with gw.db.connect() as conn:
        status = conn.execute(
            sa.select(schema.jobs.c.status).where(schema.jobs.c.id == job.id)
        ).scalar_one()
        results = conn.execute(
            sa.select(sa.func.count()).select_from(schema.job_results)
        ).scalar_one()
        reservation = conn.execute(sa.select(schema.budget_reservations)).one()
        budgets = conn.execute(sa.select(schema.privacy_budgets)).all()
        entries = conn.execute(sa.select(entries_table.c.event_type, entries_table.c.body)).all()
    assert status == "released"
    assert results == 1
    assert reservation.status == "committed"
    for row in budgets:  # the dataset's global row and the department's
        assert (row.rho_spent, row.rho_reserved) == (reservation.rho, 0)
    mine = [e.event_type for e in entries if job.id.encode() in bytes(e.body)]
    assert mine.count("job.reclaimed") == 1 and mine.count("job.released") == 1


@pytest.mark.slow
def test_a_job_booked_to_one_snapshot_does_not_run_on_the_next(
    world: World, owners: dict[str, Caller], analyst: Caller
) -> None:
    """With `refresh: snapshot` a job is charged to the period of the file it was accepted
    on. Run on a newer file it would spend that file's privacy on the old period's budget,
    on top of the new period's full budget: it must fail (and give its reservation back)."""
    gw = world.app.state.gateway
    world.app.state.pool.stop()
    path = world.settings.data_dir / "civil" / "residents.parquet"
    _write(path, [f"p{i:04d}" for i in range(200)])
    snapshot = PRIVACY.replace("refresh: monthly", "refresh: snapshot")
    r = owners["civil"].post_yaml("/v1/datasets", documents.RESIDENTS + snapshot)
    assert r.status_code == 201, r.text
    _approve(owners["civil"], analyst, COUNT_TEMPLATE, "residents-count-dp")
    submitted = analyst.post("/v1/jobs", json={"template": "residents-count-dp"})
    assert submitted.status_code == 202, submitted.text
    _write(path, [f"p{i:04d}" for i in range(300)])  # the next snapshot
    job = worker.claim_next(gw, "w")
    assert job is not None
    outcome = worker.Runner(gw).execute(job)
    assert outcome.result is None
    worker.finish(gw, job, outcome)
    with gw.db.connect() as conn:
        reservation = conn.execute(sa.select(schema.budget_reservations)).one()
    assert reservation.status == "returned"


@pytest.mark.slow
def test_an_analyst_of_the_providing_department_sees_only_its_own_budget(
    world: World, owners: dict[str, Caller], analyst: Caller
) -> None:
    """Every department's charges and the global row are for the data owner; an analyst who
    happens to work in the providing department sees its own department's row only."""
    r = owners["civil"].post_yaml("/v1/datasets", _residents_in_four_districts() + PRIVACY)
    assert r.status_code == 201, r.text
    _approve(owners["civil"], analyst, COUNT_TEMPLATE, "residents-count-dp")
    assert _run(analyst, "residents-count-dp")["status"] == "released"
    civil_analyst = world.as_("analyst@civil", "civil", "analyst")
    seen = civil_analyst.get("/v1/budgets")
    assert seen.status_code == 200, seen.text
    assert {b["department"] for b in seen.json()["budgets"]} == {"civil"}
    owner_view = owners["civil"].get("/v1/budgets").json()["budgets"]
    assert {"stats", "*"} <= {b["department"] for b in owner_view}
