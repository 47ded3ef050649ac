"""The whole job path through the real app, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from audit import NoteVerifier, open_checkpoint, verify_inclusion
from audit.checkpoint import Signer
from gateway import home, timing
from gateway.demo import documents
from tests.integration.conftest import Caller, World

SUBMIT = {
    "template": "enterprises-without-tax-filing",
    "parameters": {"year": 2024, "industry": "manufacturing"},
    "purpose": "compliance campaign",
}


def expected_counts(world: World) -> dict[str, int]:
    """The same question asked of DuckDB directly, outside the gateway."""
    data = world.settings.data_dir
    with duckdb.connect() as con:  # its own: not the module's shared default connection
        rows = con.sql(
            f"""
            SELECT r.district, COUNT(*) FROM '{data}/market/enterprise_registry.parquet' AS r
            WHERE r.industry = 'manufacturing' AND r.status = 'active'
              AND NOT EXISTS (SELECT 1 FROM '{data}/tax/filings.parquet' AS t
                              WHERE t.enterprise_id = r.enterprise_id AND t.year = 2024)
            GROUP BY r.district
            """
        ).fetchall()
    return {str(d): int(n) for d, n in rows}


def run_job(analyst: Caller, body: dict[str, Any] = SUBMIT) -> dict[str, Any]:
    submitted = analyst.submit(body)
    assert submitted.status_code == 202, submitted.text
    assert submitted.json()["status"] == "accepted"
    result = analyst.get(f"/v1/jobs/{submitted.json()['id']}/result", params={"wait": 60})
    assert result.status_code == 200, result.text
    out: dict[str, Any] = result.json()
    return out


@pytest.mark.slow
def test_job_releases_groups_at_or_above_min_size_and_withholds_the_rest(
    world: World, analyst: Caller, approved_template: dict[str, Any]
) -> None:
    body = run_job(analyst)
    assert body["status"] == "released"
    expected = expected_counts(world)
    released = {row[0]: row[1] for row in body["rows"]}
    assert released == {d: n for d, n in expected.items() if n >= 10}
    withheld = {cell["key"]["district"] for cell in body["withheld"]}
    assert withheld == {d for d, n in expected.items() if n < 10}
    assert withheld, "the fixture data should have a small group"
    assert all(cell["rule"] == "min_group_size" for cell in body["withheld"])
    # withheld cells carry their key, never their count
    assert all(set(cell) == {"key", "column", "rule", "reason"} for cell in body["withheld"])


@pytest.mark.slow
def test_release_receipt_proves_inclusion_under_a_signed_checkpoint(
    world: World, analyst: Caller, approved_template: dict[str, Any]
) -> None:
    receipt = run_job(analyst)["receipt"]
    signer = Signer.from_pem(
        (world.settings.keys_dir / home.AUDIT_KEY).read_bytes(), world.settings.audit_origin
    )
    verifier: NoteVerifier = signer.verifier()
    checkpoint = open_checkpoint(receipt["checkpoint"], [verifier], world.settings.audit_origin)
    assert checkpoint.size == receipt["tree_size"]
    verify_inclusion(
        bytes.fromhex(receipt["leaf_hash"]),
        receipt["audit_index"],
        checkpoint.size,
        [bytes.fromhex(h) for h in receipt["inclusion_proof"]],
        checkpoint.root,
    )


@pytest.mark.slow
def test_job_denied_when_template_not_approved_by_every_provider(
    world: World, registered: None, owners: dict[str, Caller], analyst: Caller
) -> None:
    proposed = analyst.post_yaml("/v1/templates", documents.NO_FILING_TEMPLATE).json()
    owners["market"].post(
        "/v1/templates/enterprises-without-tax-filing/versions/1/approvals",
        json={"content_hash": proposed["content_hash"]},
    )
    denied = analyst.submit(SUBMIT)
    assert denied.status_code == 403
    assert denied.headers["content-type"].startswith("application/problem+json")
    assert "not approved" in denied.json()["detail"]


@pytest.mark.slow
def test_job_denied_with_rule_on_not_shared_dataset(
    registered: None, owners: dict[str, Caller], analyst: Caller
) -> None:
    proposed = analyst.post_yaml("/v1/templates", documents.RESIDENTS_TEMPLATE).json()
    approved = owners["civil"].post(
        "/v1/templates/residents-by-district/versions/1/approvals",
        json={"content_hash": proposed["content_hash"]},
    )
    assert approved.json()["status"] == "approved"
    denied = analyst.post(
        "/v1/jobs", json={"template": "residents-by-district", "parameters": {"born_since": 1990}}
    )
    assert denied.status_code == 403
    problem = denied.json()
    assert "civil.residents" in problem["detail"]
    assert problem["dataset"] == "civil.residents"
    assert problem["policy_version"] == 1


@pytest.mark.slow
def test_conditional_dataset_needs_a_purpose(
    analyst: Caller, approved_template: dict[str, Any]
) -> None:
    denied = analyst.submit({**SUBMIT, "purpose": "  ", "purposes": []})
    assert denied.status_code == 403
    assert "purpose" in denied.json()["detail"]


def test_author_cannot_approve_own_template(world: World, registered: None) -> None:
    both = world.as_("dual@market", "market", "analyst", "data_owner")
    proposed = both.post_yaml("/v1/templates", documents.NO_FILING_TEMPLATE).json()
    refused = both.post(
        "/v1/templates/enterprises-without-tax-filing/versions/1/approvals",
        json={"content_hash": proposed["content_hash"]},
    )
    assert refused.status_code == 403
    assert "author" in refused.json()["detail"]


def test_owner_of_another_department_cannot_approve(
    registered: None, owners: dict[str, Caller], analyst: Caller
) -> None:
    proposed = analyst.post_yaml("/v1/templates", documents.NO_FILING_TEMPLATE).json()
    refused = owners["civil"].post(
        "/v1/templates/enterprises-without-tax-filing/versions/1/approvals",
        json={"content_hash": proposed["content_hash"]},
    )
    assert refused.status_code == 403


def test_analyst_role_cannot_approve_templates(
    registered: None, world: World, analyst: Caller
) -> None:
    analyst.post_yaml("/v1/templates", documents.NO_FILING_TEMPLATE)
    other = world.as_("someone@market", "market", "analyst")
    refused = other.post(
        "/v1/templates/enterprises-without-tax-filing/versions/1/approvals", json={}
    )
    assert refused.status_code == 403
    assert refused.json()["rule"] is None


def test_other_department_cannot_see_a_job_or_its_result(
    world: World, analyst: Caller, approved_template: dict[str, Any]
) -> None:
    job = analyst.submit(SUBMIT).json()
    stranger = world.as_("analyst@tax", "tax", "analyst")
    assert stranger.get(f"/v1/jobs/{job['id']}").status_code == 404
    assert stranger.get(f"/v1/jobs/{job['id']}/result").status_code == 404


@pytest.mark.parametrize("migrated_database_url", ["sqlite"], indirect=True)
def test_profiling_times_every_stage_of_a_released_job(
    analyst: Caller, approved_template: dict[str, Any]
) -> None:
    """`bench e2e` reads the job path's stage timers: each stage must still be timed (a merge
    once dropped the sandbox and disclosure timers, and the profile blamed HTTP for them)."""
    recorder = timing.RECORDER
    recorder.reset()
    recorder.enable()
    try:
        run_job(analyst)
        samples = recorder.samples()
    finally:
        recorder.disable()
        recorder.reset()
    stages = {"token", "submit", "store:submit", "queue", "admission", "sandbox", "disclosure"}
    stages |= {"store:release", "audit", "receipt"}
    assert stages <= set(samples), sorted(stages - set(samples))
