"""A revocation approved while a job waits in the queue stops that job (SQLite and PostgreSQL).

The gateway here runs no worker pool, so the test decides when the queued job runs: after the
policy that accepted it has been revoked. Without the run-time re-check the job is released.
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
from gateway.jobs.worker import Runner, claim_next
from gateway.settings import Settings
from tests.integration import conftest as integration
from tests.integration.conftest import Caller, World
from tests.integration.test_job_path import SUBMIT

analyst, owners, registered = integration.analyst, integration.owners, integration.registered
approved_template, demo_data_dir = integration.approved_template, integration.demo_data_dir

REGISTRY_RULE = {
    "role": "analyst",
    "department": "*",
    "object": "data/conditional/general/*",
    "action": "query:aggregate",
    "purpose": "approved",
}


@pytest.fixture
def gateway_and_world(
    tmp_path: Path, migrated_database_url: str, demo_data_dir: Path
) -> Iterator[tuple[Gateway, World]]:
    """The integration `world`, but without workers: jobs stay queued until run here."""
    settings = Settings(home=tmp_path / "home", database_url=migrated_database_url, workers=1)
    home.init_home(settings)
    for source in demo_data_dir.rglob("*.parquet"):
        target = settings.data_dir / source.relative_to(demo_data_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    keys = IssuerKeys.load(settings.keys_dir / home.ISSUER_KEYS)
    issuer = LocalIssuer(keys, issuer=settings.local_issuer, audience=settings.oidc_audience)
    app = create_app(settings, run_workers=False)  # owns its gateway: closed on shutdown
    with TestClient(app) as client:
        yield app.state.gateway, World(settings=settings, client=client, issuer=issuer, app=app)


@pytest.fixture
def world(gateway_and_world: tuple[Gateway, World]) -> World:
    return gateway_and_world[1]


def run_queued(gw: Gateway) -> None:
    job = claim_next(gw, "test-worker")
    assert job is not None
    Runner(gw).run(job)


@pytest.mark.slow
def test_a_job_queued_before_a_revocation_does_not_run_after_it(
    gateway_and_world: tuple[Gateway, World],
    analyst: Caller,
    approved_template: dict[str, Any],
) -> None:
    gw, world = gateway_and_world
    submitted = analyst.submit(SUBMIT)
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    officer_a = world.as_("officer-a@security", "security", "security_officer")
    officer_b = world.as_("officer-b@security", "security", "security_officer")
    proposal = officer_a.post("/v1/policies", json={"remove": [REGISTRY_RULE]}).json()
    approved = officer_b.post(f"/v1/policies/proposals/{proposal['id']}/approvals", json={})
    assert approved.status_code == 201, approved.text

    run_queued(gw)

    job = analyst.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "failed"
    assert "policy version 2 no longer allows this job" in job["error"]
    assert "rows" not in analyst.get(f"/v1/jobs/{job_id}/result").json()
    auditor = world.as_("auditor@audit", "audit", "auditor")
    items = auditor.get("/v1/audit/entries", params={"limit": 1000}).json()["items"]
    denied = [i["event"] for i in items if i["event"]["type"] == "job.denied"][-1]
    assert denied["allowed"] is False and denied["target"] == f"job:{job_id}"
    assert denied["details"]["policy_version"] == 2
    assert denied["details"]["dataset"] == "market.enterprise_registry"
    assert denied["actor"]["subject"] == "analyst@stats"


@pytest.mark.slow
def test_a_queued_job_still_allowed_runs(
    gateway_and_world: tuple[Gateway, World],
    analyst: Caller,
    approved_template: dict[str, Any],
) -> None:
    gw, world = gateway_and_world
    submitted = analyst.submit(SUBMIT)
    assert submitted.status_code == 202, submitted.text
    run_queued(gw)
    job = analyst.get(f"/v1/jobs/{submitted.json()['id']}").json()
    assert job["status"] in ("released", "suppressed"), job
    auditor = world.as_("auditor@audit", "audit", "auditor")
    items = auditor.get("/v1/audit/entries", params={"limit": 1000}).json()["items"]
    ran = [i["event"] for i in items if i["event"]["type"] == f"job.{job['status']}"][-1]
    assert ran["details"]["policy_version"] == 1  # the version it was allowed to run under
