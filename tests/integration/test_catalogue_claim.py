"""The worker's re-check takes the catalogue's version from the claim's own statement (issue 13).

The app here runs no workers: the test claims and runs jobs itself with the worker's `claim`
and `Runner`, so a change can be made exactly between a job's acceptance and its claim.
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
from tests.integration.conftest import Caller, World
from tests.integration.test_catalogue_cache import (
    SUBMIT,
    approved,  # noqa: F401  (a fixture)
)

pytestmark = pytest.mark.slow  # jobs through the real sandbox


@pytest.fixture
def world(tmp_path: Path, migrated_database_url: str) -> Iterator[World]:
    settings = Settings(home=tmp_path / "home", database_url=migrated_database_url, workers=2)
    home.init_home(settings)
    keys = IssuerKeys.load(settings.keys_dir / home.ISSUER_KEYS)
    issuer = LocalIssuer(keys, issuer=settings.local_issuer, audience=settings.oidc_audience)
    app = create_app(settings, run_workers=False)
    with TestClient(app) as client:
        yield World(settings=settings, client=client, issuer=issuer, app=app)


def claim_and_run(gw: Gateway, runner: worker.Runner) -> str:
    claimed = worker.claim(gw, "w1")
    assert claimed is not None
    assert claimed.catalogue_seen is not None and claimed.catalogue_seen >= 0
    runner.run(claimed.job, claimed.catalogue_seen)
    return claimed.job.id


def job_of(analyst: Caller, job_id: str) -> dict[str, Any]:
    response = analyst.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.usefixtures("approved")
def test_a_retirement_after_acceptance_fails_the_job_at_a_warm_worker(
    world: World, owners: dict[str, Caller], analyst: Caller
) -> None:
    gw: Gateway = world.app.state.gateway
    runner = worker.Runner(gw)
    assert analyst.submit(SUBMIT).status_code == 202
    first = claim_and_run(gw, runner)  # the worker's copy of the catalogue is now warm
    assert job_of(analyst, first)["status"] == "released"
    accepted = analyst.submit(SUBMIT)
    assert accepted.status_code == 202, accepted.text
    other = create_app(world.settings, run_workers=False)  # another replica, same store
    with TestClient(other) as client:
        retired = Caller(client, owners["market"].token).post(
            "/v1/templates/sites-by-district/versions/1/retirement", json={"reason": "withdrawn"}
        )
        assert retired.status_code == 201, retired.text
    second = claim_and_run(gw, runner)
    assert second == accepted.json()["id"]
    ended = job_of(analyst, second)
    assert ended["status"] == "failed"
    assert "no longer approved" in ended["error"]
