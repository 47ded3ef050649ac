"""Fair and bounded under many departments (issue 13): the claim order between departments, the
per-department running cap, caps on unfinished jobs, and cancelling a job.

The app here runs no workers: each test claims jobs itself with the worker's own `claim_next`,
so the order is observed exactly, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway import home
from gateway.api import create_app
from gateway.auth.issuer import LocalIssuer
from gateway.auth.keys import IssuerKeys
from gateway.context import Gateway
from gateway.jobs import worker
from gateway.settings import Settings
from tests.integration.conftest import Caller, World, grant_purpose
from tests.integration.test_dp_jobs import SUBMIT as DP_SUBMIT
from tests.integration.test_dp_jobs import dp_template  # noqa: F401  (a fixture)

JOB = {
    "template": "enterprises-without-tax-filing",
    "parameters": {"year": 2024, "industry": "retail"},
}


@pytest.fixture
def world(tmp_path: Path, migrated_database_url: str, demo_data_dir: Path) -> Iterator[World]:
    settings = Settings(
        home=tmp_path / "home",
        database_url=migrated_database_url,
        workers=2,  # so one department may run 1 job at once (workers - 1)
        max_pending_per_caller=3,
        max_pending_per_department=4,
    )
    home.init_home(settings)
    for source in demo_data_dir.rglob("*.parquet"):
        target = settings.data_dir / source.relative_to(demo_data_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    keys = IssuerKeys.load(settings.keys_dir / home.ISSUER_KEYS)
    issuer = LocalIssuer(keys, issuer=settings.local_issuer, audience=settings.oidc_audience)
    app = create_app(settings, run_workers=False)
    with TestClient(app) as client:
        yield World(settings=settings, client=client, issuer=issuer, app=app)


def gateway_of(world: World) -> Gateway:
    gw: Gateway = world.app.state.gateway
    return gw


@pytest.fixture
def two_departments(
    world: World, approved_template: dict[str, Any], owners: dict[str, Caller], analyst: Caller
) -> tuple[Caller, Caller]:
    """Two analysts of different departments, each with its purposes approved."""
    other = world.as_("analyst@planning", "planning", "analyst")
    for caller in (analyst, other):
        grant_purpose(caller, owners["market"], "market.enterprise_registry")
        grant_purpose(caller, owners["tax"], "tax.filings")
    return analyst, other


def submitted(caller: Caller) -> str:
    response = caller.submit(JOB)
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/v1/jobs/{response.json()['id']}"
    job_id: str = response.json()["id"]
    return job_id


def audit_types(world: World) -> list[dict[str, Any]]:
    auditor = world.as_("auditor@audit", "audit", "auditor")
    items = auditor.get("/v1/audit/entries", params={"limit": 1000}).json()["items"]
    return [i["event"] for i in items]


def test_a_flooding_department_does_not_hold_every_worker(
    world: World, two_departments: tuple[Caller, Caller]
) -> None:
    stats, planning = two_departments
    flood = [submitted(stats) for _ in range(3)]  # the caller's cap
    late = submitted(planning)
    gw = gateway_of(world)
    first = worker.claim_next(gw, "w1")
    second = worker.claim_next(gw, "w2")
    assert first is not None and second is not None
    # the oldest job first, then the other department's (its running count is lower) …
    assert (first.id, second.id) == (flood[0], late)
    # … and stats already runs its one allowed job: nothing more is claimed
    assert worker.claim_next(gw, "w3") is None


def test_claims_alternate_between_departments_while_both_wait(
    world: World, two_departments: tuple[Caller, Caller]
) -> None:
    stats, planning = two_departments
    a = [submitted(stats) for _ in range(2)]
    b = [submitted(planning) for _ in range(2)]
    gw = gateway_of(world)
    order = []
    for n in range(4):
        job = worker.claim_next(gw, f"w{n}")
        assert job is not None
        order.append(job.id)
        # the job ends before the next claim: only the order between departments is at stake
        worker.finish(gw, job, worker.Outcome(worker.JobStatus.FAILED, None, "test"))
    assert order == [a[0], b[0], a[1], b[1]]


def test_unfinished_jobs_are_capped_per_caller_with_retry_after(
    world: World, two_departments: tuple[Caller, Caller]
) -> None:
    stats, _ = two_departments
    for _ in range(3):
        submitted(stats)
    refused = stats.submit(JOB)
    assert refused.status_code == 429, refused.text
    assert refused.headers["Retry-After"] == "5"
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert refused.json()["reason_code"] == "queue_full"
    denied = [e for e in audit_types(world) if e["type"] == "job.denied"]
    assert denied[-1]["details"]["reason_code"] == "queue_full"
    accepted = [e for e in audit_types(world) if e["type"] == "job.accepted"]
    assert len(accepted) == 3  # the refused submission wrote no job


def test_unfinished_jobs_are_capped_per_department(
    world: World, two_departments: tuple[Caller, Caller]
) -> None:
    stats, _ = two_departments
    colleague = world.as_("colleague@stats", "stats", "analyst")
    colleague.purposes = list(stats.purposes)
    for _ in range(3):
        submitted(stats)
    submitted(colleague)  # the department's fourth
    refused = colleague.submit(JOB)
    assert refused.status_code == 429 and "department" in refused.json()["detail"]


def test_a_cancelled_job_never_runs_and_is_audited(
    world: World, two_departments: tuple[Caller, Caller]
) -> None:
    stats, planning = two_departments
    job_id = submitted(stats)
    assert planning.request("DELETE", f"/v1/jobs/{job_id}").status_code == 404
    cancelled = stats.request("DELETE", f"/v1/jobs/{job_id}")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json() == {"id": job_id, "status": "cancelled"}
    assert worker.claim_next(gateway_of(world), "w1") is None
    result = stats.get(f"/v1/jobs/{job_id}/result")
    assert result.status_code == 200 and result.json()["status"] == "cancelled"
    assert "rows" not in result.json()
    again = stats.request("DELETE", f"/v1/jobs/{job_id}")
    assert again.status_code == 409
    [entry] = [e for e in audit_types(world) if e["type"] == "job.cancelled"]
    assert entry["details"]["was"] == "accepted"


def test_a_running_job_cancelled_releases_nothing(
    world: World, two_departments: tuple[Caller, Caller]
) -> None:
    stats, _ = two_departments
    job_id = submitted(stats)
    gw = gateway_of(world)
    job = worker.claim_next(gw, "w1")
    assert job is not None and job.id == job_id
    assert stats.request("DELETE", f"/v1/jobs/{job_id}").status_code == 200
    worker.Runner(gw).run(job)  # the worker ends its run after the cancellation
    body = stats.get(f"/v1/jobs/{job_id}/result").json()
    assert body["status"] == "cancelled" and "rows" not in body
    assert not [e for e in audit_types(world) if e["type"] == "job.released"]


@pytest.mark.slow
def test_cancelling_a_dp_job_returns_its_reservation_once(
    world: World,
    analyst: Caller,
    dp_template: dict[str, Any],  # noqa: F811
) -> None:
    def reserved() -> str:
        budgets = analyst.get("/v1/budgets").json()["budgets"]
        mine = [b for b in budgets if b["department"] == "stats"]
        value: str = mine[0]["rho"]["reserved"]
        return value

    job = analyst.post("/v1/jobs", json=DP_SUBMIT)
    assert job.status_code == 202, job.text
    assert reserved() == "0.1"
    assert analyst.request("DELETE", f"/v1/jobs/{job.json()['id']}").status_code == 200
    assert reserved() == "0"
    assert analyst.request("DELETE", f"/v1/jobs/{job.json()['id']}").status_code == 409
    assert reserved() == "0"
    [entry] = [e for e in audit_types(world) if e["type"] == "job.cancelled"]
    assert entry["details"]["privacy"]["ledger"] == "returned"
