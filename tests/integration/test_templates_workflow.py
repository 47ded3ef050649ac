"""The template workflow through the real app: approval, retirement (410), pre-flight,
purposes for conditional data, share classes, and list templates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pytest

from gateway.demo import documents
from gateway.store import db, schema
from tests.integration.conftest import Caller, World, grant_purpose
from tests.integration.test_job_path import SUBMIT, run_job

LIST_JOB = {
    "template": "licensed-abnormal-taxpayers",
    "parameters": {"district": "chaoyang", "year": 2023},
}


def audit_events(world: World, type_: str) -> list[dict[str, Any]]:
    auditor = world.as_("auditor@audit", "audit", "auditor")
    items = auditor.get("/v1/audit/entries", params={"limit": 1000}).json()["items"]
    return [i["event"] for i in items if i["event"]["type"] == type_]


@pytest.fixture
def published(owners: dict[str, Caller]) -> None:
    for dept, doc in (("market", documents.LICENCES), ("tax", documents.ABNORMAL_TAXPAYERS)):
        response = owners[dept].post_yaml("/v1/datasets", doc)
        assert response.status_code == 201, response.text


def propose(analyst: Caller, document: str) -> dict[str, Any]:
    response = analyst.post_yaml("/v1/templates", document)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def approve(owner: Caller, template: dict[str, Any]) -> Any:
    return owner.post(
        f"/v1/templates/{template['id']}/versions/{template['version']}/approvals",
        json={"content_hash": template["content_hash"]},
    )


# --- approval ------------------------------------------------------------------------------


def test_approval_of_a_stale_hash_is_refused(
    registered: None, owners: dict[str, Caller], analyst: Caller
) -> None:
    v1 = propose(analyst, documents.NO_FILING_TEMPLATE)
    v2 = propose(
        analyst,
        documents.NO_FILING_TEMPLATE.replace("version: 1", "version: 2").replace(
            "max: 2025", "max: 2024"
        ),
    )
    assert v2["content_hash"] != v1["content_hash"] and v2["status"] == "proposed"
    stale = owners["market"].post(
        "/v1/templates/enterprises-without-tax-filing/versions/2/approvals",
        json={"content_hash": v1["content_hash"]},  # reviewed version 1, approving version 2
    )
    assert stale.status_code == 409
    assert "content hash" in stale.json()["detail"]
    shown = analyst.get("/v1/templates/enterprises-without-tax-filing/versions/2").json()
    assert shown["status"] == "proposed" and shown["approvals"] == []


def test_self_approval_is_refused(world: World, registered: None, published: None) -> None:
    both = world.as_("Lead@Market", "market", "analyst", "data_owner")
    template = propose(both, documents.LIST_TEMPLATE)
    denied = world.as_("lead@market", "market", "data_owner").post(
        f"/v1/templates/{template['id']}/versions/1/approvals",
        json={"content_hash": template["content_hash"]},
    )
    assert denied.status_code == 403
    assert "author" in denied.json()["detail"]
    shown = both.get(f"/v1/templates/{template['id']}/versions/1").json()
    assert shown["approvals"] == [] and shown["status"] == "proposed"


# --- retirement ----------------------------------------------------------------------------


def test_a_retired_version_answers_410_to_reads_and_jobs(
    world: World, analyst: Caller, owners: dict[str, Caller], approved_template: dict[str, Any]
) -> None:
    path = "/v1/templates/enterprises-without-tax-filing/versions/1"
    retired = owners["tax"].post(f"{path}/retirement", json={"reason": "superseded"})
    assert retired.status_code == 201, retired.text
    assert retired.json()["status"] == "retired"
    gone = analyst.get(path)
    assert gone.status_code == 410
    assert gone.headers["content-type"].startswith("application/problem+json")
    assert gone.json()["type"].endswith(":gone")
    job = analyst.submit(SUBMIT)
    assert job.status_code == 410
    assert job.json()["status"] == 410
    assert audit_events(world, "job.denied")[-1]["details"]["reason_code"] == "retired"
    assert audit_events(world, "template.retired")
    assert owners["tax"].post(f"{path}/retirement", json={}).status_code == 410


def test_only_the_author_or_an_owner_may_retire(
    world: World, analyst: Caller, owners: dict[str, Caller], approved_template: dict[str, Any]
) -> None:
    path = "/v1/templates/enterprises-without-tax-filing/versions/1/retirement"
    stranger = world.as_("analyst@health", "health", "analyst")
    assert stranger.post(path, json={}).status_code == 403
    assert owners["civil"].post(path, json={}).status_code == 403  # owns no dataset of it
    assert analyst.post(path, json={}).status_code == 201  # the author


# --- pre-flight ----------------------------------------------------------------------------


def test_preflight_runs_on_synthetic_data_never_the_real_data(
    world: World, registered: None, owners: dict[str, Caller], analyst: Caller
) -> None:
    template = propose(analyst, documents.NO_FILING_TEMPLATE)
    # take the real data away: a pre-flight that read it would fail
    for source in world.settings.data_dir.rglob("*.parquet"):
        source.rename(source.with_suffix(".away"))
    try:
        response = owners["market"].get(f"/v1/templates/{template['id']}/versions/1/preflight")
    finally:
        for moved in world.settings.data_dir.rglob("*.away"):
            moved.rename(moved.with_suffix(".parquet"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["synthetic"] is True and body["ran"] is True
    assert body["content_hash"] == template["content_hash"]
    assert body["columns"] == ["district", "enterprises"]
    assert body["rows"], "synthetic data should produce groups"
    real_districts = {"chaoyang", "haidian", "fengtai"}
    assert not {row[0] for row in body["rows"]} & real_districts
    assert body["parameters"]["industry"].startswith("industry_")


def test_preflight_of_a_verify_template_answers_synthetic_keys(
    registered: None, owners: dict[str, Caller], analyst: Caller
) -> None:
    template = propose(analyst, documents.VERIFY_TEMPLATE)
    body = owners["civil"].get(f"/v1/templates/{template['id']}/versions/1/preflight").json()
    assert body["ran"] is True and body["columns"] == ["key_index", "matched"]
    assert len(body["rows"]) == len(body["keys"]) == 4
    assert body["rows"][-1] == [4, False]  # the key made up not to exist


# --- share classes and purposes ------------------------------------------------------------


@pytest.mark.slow
def test_conditional_data_without_an_approved_purpose_is_denied(
    world: World, registered: None, owners: dict[str, Caller], analyst: Caller
) -> None:
    template = propose(analyst, documents.NO_FILING_TEMPLATE)
    for dept in ("market", "tax"):
        assert approve(owners[dept], template).status_code == 201
    denied = analyst.submit(SUBMIT)
    assert denied.status_code == 403
    assert denied.json()["dataset"] in {"market.enterprise_registry", "tax.filings"}
    assert denied.json()["reason_code"] == "missing_approval"
    assert audit_events(world, "job.denied")[-1]["details"]["reason_code"] == "missing_approval"
    # a purpose requested but not yet approved is still missing
    analyst.post("/v1/purposes", json={"dataset": "market.enterprise_registry", "purpose": "x"})
    denied = analyst.submit(SUBMIT)
    assert denied.status_code == 403
    assert audit_events(world, "job.denied")[-1]["details"]["reason_code"] == "missing_approval"
    # approved for one dataset only: denied naming the other
    grant_purpose(analyst, owners["market"], "market.enterprise_registry")
    denied = analyst.submit(SUBMIT)
    assert denied.status_code == 403 and denied.json()["dataset"] == "tax.filings"
    grant_purpose(analyst, owners["tax"], "tax.filings")
    assert run_job(analyst)["status"] == "released"


def test_conditional_data_with_an_expired_purpose_is_denied(
    world: World, analyst: Caller, owners: dict[str, Caller], approved_template: dict[str, Any]
) -> None:
    assert run_job(analyst)["status"] == "released"
    engine = db.create_engine(world.settings.resolved_database_url)
    try:
        with engine.begin() as conn:  # time passes: the purposes expire
            conn.execute(
                schema.purposes.update().values(expires_at=datetime.now(UTC) - timedelta(hours=1))
            )
    finally:
        engine.dispose()
    denied = analyst.submit(SUBMIT)
    assert denied.status_code == 403
    assert "expired" in denied.json()["detail"]
    assert denied.json()["reason_code"] == "expired_purpose"
    assert audit_events(world, "job.denied")[-1]["details"]["reason_code"] == "expired_purpose"


def test_purposes_are_decided_only_by_the_datasets_owner_with_an_expiry(
    registered: None, owners: dict[str, Caller], analyst: Caller
) -> None:
    asked = analyst.post(
        "/v1/purposes", json={"dataset": "market.enterprise_registry", "purpose": "audit"}
    ).json()
    path = f"/v1/purposes/{asked['id']}/approvals"
    later = (datetime.now(UTC) + timedelta(days=10)).isoformat()
    assert owners["tax"].post(path, json={"expires_at": later}).status_code == 403
    assert owners["market"].post(path, json={}).status_code == 422  # no expiry
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert owners["market"].post(path, json={"expires_at": past}).status_code == 422
    assert owners["market"].post(path, json={"expires_at": later}).status_code == 201
    assert owners["market"].post(path, json={"expires_at": later}).status_code == 409
    listed = analyst.get("/v1/purposes").json()["items"]
    assert [p["status"] for p in listed] == ["approved"]
    # no purpose is needed (nor accepted) for unconditional or not-shared data
    unconditional = analyst.post(
        "/v1/purposes", json={"dataset": "civil.residents", "purpose": "x"}
    )
    assert unconditional.status_code == 422


def register_copy(world: World, owner: Caller, name: str, share_class: str) -> str:
    """The licences again, as another dataset of the market department with another share class."""
    data = world.settings.data_dir / "market"
    (data / f"{name}.parquet").write_bytes((data / "licences.parquet").read_bytes())
    doc = (
        documents.LICENCES.replace("id: market.licences", f"id: market.{name}")
        .replace("market/licences.parquet", f"market/{name}.parquet")
        .replace("share_class: unconditional", f"share_class: {share_class}")
        .replace("open_class: open", "open_class: closed")
    )
    response = owner.post_yaml("/v1/datasets", doc)
    assert response.status_code == 201, response.text
    return f"market.{name}"


UNSHARED_TEMPLATES = {
    "aggregate": "SELECT l.district, COUNT(*) AS n FROM {ds} AS l GROUP BY l.district\n"
    "output: {{count_column: n}}",
    "list": "SELECT l.enterprise_id FROM {ds} AS l WHERE l.licence_status = 'revoked'",
}


@pytest.mark.parametrize("kind", ["aggregate", "list"])
@pytest.mark.slow
def test_not_shared_data_is_refused_to_aggregate_and_list_by_the_gateway(
    world: World, owners: dict[str, Caller], analyst: Caller, kind: str
) -> None:
    ds = register_copy(world, owners["market"], "licences_internal", "none")
    sql = UNSHARED_TEMPLATES[kind].format(ds=ds)
    doc = f"id: internal-{kind}\nversion: 1\nkind: {kind}\ntitle: t\ndatasets: [{ds}]\nsql: {sql}\n"
    template = propose(analyst, doc)
    assert approve(owners["market"], template).json()["status"] == "approved"
    denied = analyst.post("/v1/jobs", json={"template": f"internal-{kind}"})
    assert denied.status_code == 403
    assert denied.json()["dataset"] == ds
    assert denied.json()["reason_code"] == "share_class"
    # the gateway's own share-class rule decided, before policy was asked
    assert "only verify and dp templates may read it" in denied.json()["detail"]
    event = audit_events(world, "job.denied")[-1]
    assert event["details"]["reason_code"] == "share_class" and event["rule"] is None


def test_list_needs_a_policy_that_allows_it(
    world: World, owners: dict[str, Caller], analyst: Caller
) -> None:
    ds = register_copy(world, owners["market"], "licences_conditional", "conditional")
    grant_purpose(analyst, owners["market"], ds)
    sql = UNSHARED_TEMPLATES["list"].format(ds=ds)
    doc = f"id: conditional-list\nversion: 1\nkind: list\ntitle: t\ndatasets: [{ds}]\nsql: {sql}\n"
    template = propose(analyst, doc)
    assert approve(owners["market"], template).json()["status"] == "approved"
    denied = analyst.post("/v1/jobs", json={"template": "conditional-list"})
    assert denied.status_code == 403
    assert denied.json()["dataset"] == ds
    assert "may not be queried by list templates" in denied.json()["detail"]


# --- list templates --------------------------------------------------------------------------


def expected_list(world: World) -> list[list[Any]]:
    data = world.settings.data_dir
    with duckdb.connect() as con:  # its own: not the module's shared default connection
        rows = con.sql(
            f"""
            SELECT l.enterprise_id, l.district FROM '{data}/market/licences.parquet' AS l
            WHERE l.licence_status = 'valid' AND l.district = 'chaoyang'
              AND EXISTS (SELECT 1 FROM '{data}/tax/abnormal_taxpayers.parquet' AS a
                          WHERE a.enterprise_id = l.enterprise_id AND a.year = 2023)
            ORDER BY 1
            """
        ).fetchall()
    return [list(r) for r in rows]


def test_list_needs_every_providers_approval(
    world: World, registered: None, published: None, owners: dict[str, Caller], analyst: Caller
) -> None:
    template = propose(analyst, documents.LIST_TEMPLATE)
    assert approve(owners["market"], template).json()["status"] == "proposed"
    denied = analyst.post("/v1/jobs", json=LIST_JOB)
    assert denied.status_code == 403
    assert "not approved" in denied.json()["detail"]
    assert approve(owners["tax"], template).json()["status"] == "approved"
    body = run_job(analyst, LIST_JOB)
    assert body["status"] == "released", body["job"]["error"]
    assert body["columns"] == ["enterprise_id", "district"]
    assert body["rows"] == expected_list(world)
    assert body["rows"], "the fixture data should list some enterprises"


RANGE_TEMPLATE = """\
id: licences-by-expiry
version: 1
kind: aggregate
title: Valid licences expiring within a span of years, by district
datasets: [market.licences]
parameters:
  until: {type: integer_range, min: 2024, max: 2030, min_width: 2}
sql: |
  SELECT l.district, COUNT(*) AS n FROM market.licences AS l
  WHERE l.valid_until BETWEEN :until_from AND :until_to
  GROUP BY l.district
output: {count_column: n}
"""


@pytest.mark.slow
def test_range_parameters_need_their_minimum_width(
    registered: None, published: None, owners: dict[str, Caller], analyst: Caller
) -> None:
    template = propose(analyst, RANGE_TEMPLATE)
    assert approve(owners["market"], template).json()["status"] == "approved"
    body = run_job(
        analyst, {"template": "licences-by-expiry", "parameters": {"until": [2025, 2027]}}
    )
    assert body["status"] == "released", body["job"]["error"]
    narrow = analyst.post(
        "/v1/jobs", json={"template": "licences-by-expiry", "parameters": {"until": [2025, 2026]}}
    )
    assert narrow.status_code == 422
    assert "at least 2 years wide" in narrow.json()["detail"]
