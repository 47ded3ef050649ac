"""Nothing but published results is reachable under /open (issue 18b): no job, no template
SQL, no dataset row, no parameter of an unpublished release — whatever is asked, however."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from gateway.demo import documents
from tests.integration import conftest as integration
from tests.integration.conftest import Caller, World

# The integration tier's fixtures (the real app on SQLite and PostgreSQL), used here by name.
world, analyst, owners = integration.world, integration.analyst, integration.owners
demo_data_dir = integration.demo_data_dir

pytestmark = pytest.mark.slow

OPEN_ROUTES = {
    "/open/v1/datasets",
    "/open/v1/datasets/{open_id}",
    "/open/v1/datasets/{open_id}/data.csv",
    "/open/v1/usage",
    "/open/v1/audit/checkpoint",
    "/open/v1/audit/keys",
    "/open/v1/audit/proofs/consistency",
}


def _job(analyst: Caller, status: str) -> str:
    job = analyst.submit({"template": "licences-by-district", "parameters": {"status": status}})
    job_id: str = job.json()["id"]
    assert analyst.get(f"/v1/jobs/{job_id}/result", params={"wait": 30}).json()["status"] == (
        "released"
    )
    return job_id


def test_open_api_serves_only_published_results(
    world: World, owners: dict[str, Caller], analyst: Caller
) -> None:
    paths = {p for p in world.app.openapi()["paths"] if p.startswith("/open/")}
    assert paths == OPEN_ROUTES  # a new open route must be reviewed here first
    assert owners["market"].post_yaml("/v1/datasets", documents.LICENCES).status_code == 201
    proposed = analyst.post_yaml("/v1/templates", documents.OPEN_TEMPLATE).json()
    owners["market"].post(
        "/v1/templates/licences-by-district/versions/1/approvals",
        json={"content_hash": proposed["content_hash"]},
    )
    published_job = _job(analyst, "valid")
    hidden_job = _job(analyst, "revoked")  # released, never published
    gone_job = _job(analyst, "expired")  # published, then unpublished
    about = {"title": "t", "description": "d"}
    for open_id, job in (("licences-valid", published_job), ("licences-expired", gone_job)):
        r = owners["market"].post(f"/v1/open/{open_id}", json={"job": job, **about})
        assert r.status_code == 201, r.text
    assert owners["market"].post("/v1/open/licences-expired/unpublish").status_code == 200

    ids = [published_job, hidden_job, gone_job, "licences-by-district", "market.licences"]
    probes = ["/open/v1/datasets", "/open/v1/usage", "/open/v1/audit/checkpoint"]
    probes += ["/open/v1/audit/keys"]
    for name in [*ids, "licences-expired", "licences-valid", "..", "%2e%2e", "v1"]:
        probes += [f"/open/v1/datasets/{name}", f"/open/v1/datasets/{name}/data.csv"]
    for version in (0, 1, 2, 3, -1, 10**9):
        probes += [f"/open/v1/datasets/licences-expired?version={version}"]
        probes += [f"/open/v1/datasets/licences-valid?version={version}"]
    probes += [
        "/open/v1/datasets/licences-valid?job=" + hidden_job,
        "/open/v1/datasets/licences-valid/../../../v1/jobs/" + hidden_job,
        "/open/v1/jobs/" + hidden_job,
        "/open/v1/templates/licences-by-district",
        "/open/v1/audit/entries",
        "/open/v1/audit/proofs/consistency?first=1&second=2",
    ]
    rows = pq.read_table(world.settings.data_dir / "market" / "licences.parquet")
    sample_ids = rows.column("enterprise_id").to_pylist()[:50]
    secrets = [published_job, hidden_job, gone_job, "licence_status", "revoked", "expired"]
    secrets += [str(world.settings.data_dir), *sample_ids]
    officer = world.as_("officer@sec", "security", "security_officer")
    key = officer.post("/v1/apikeys", json={"holder": "crawler", "per_minute": 10_000}).json()
    for probe in probes:
        for headers in ({}, {"X-API-Key": key["key"]}):
            response = world.client.get(probe, headers=headers)
            assert response.status_code < 500, probe
            # a problem's `instance` echoes the path asked for: that is not a disclosure
            text = response.text.replace(response.request.url.path, "")
            leaked = [s for s in secrets if s in text]
            assert leaked == [], (probe, leaked)
    # what is reachable is the published one
    doc = world.client.get("/open/v1/datasets/licences-valid").json()
    assert doc["parameters"] == {"status": "valid"}
    # and the signed-in API stays closed to callers without a token
    for path in (f"/v1/jobs/{hidden_job}", f"/v1/jobs/{hidden_job}/result", "/v1/templates"):
        assert world.client.get(path).status_code == 401
