"""有条件共享 is the owner's approval of the purpose the job names (issue 12), and the one
admission decision answers submission, the worker and the officer's check alike.

Runs on SQLite and PostgreSQL with the real app, the default policy (`approved` on conditional
data) and real purposes requested by the analyst and decided by each dataset's owner.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from tests.integration.conftest import Caller, World, grant_purpose
from tests.integration.test_job_path import SUBMIT, run_job

DATASETS = ("market.enterprise_registry", "tax.filings")


def check(officer: Caller, **body: Any) -> dict[str, Any]:
    response = officer.post("/v1/policies/check", json=body)
    assert response.status_code == 200, response.text
    out: dict[str, Any] = response.json()
    return out


@pytest.fixture
def officer(world: World) -> Caller:
    return world.as_("officer@security", "security", "security_officer")


def agree(analyst: Caller, officer: Caller, purposes: list[str], *, code: str) -> dict[str, Any]:
    """The job is refused at submission with `code`, and the check says the same."""
    denied = analyst.submit({**SUBMIT, "purposes": purposes})
    assert denied.status_code == 403, denied.text
    problem: dict[str, Any] = denied.json()
    assert problem["reason_code"] == code, problem
    asked = check(
        officer,
        roles=["analyst"],
        department="stats",
        template=SUBMIT["template"],
        purpose=SUBMIT["purpose"],
        purposes=purposes,
    )
    assert not asked["allowed"]
    assert (asked["reason_code"], asked["dataset"]) == (code, problem["dataset"])
    return problem


def test_a_job_naming_its_approved_purposes_runs_and_its_entry_names_them(
    world: World, analyst: Caller, officer: Caller, approved_template: dict[str, Any]
) -> None:
    ids = list(analyst.purposes)
    assert len(ids) == 2
    asked = check(
        officer,
        roles=["analyst"],
        department="stats",
        template=SUBMIT["template"],
        purpose=ids[0],
        purposes=ids[1:],
    )
    assert asked["allowed"], asked["reason"]
    body = run_job(analyst, {**SUBMIT, "purpose": ids[0], "purposes": ids[1:]})
    assert body["status"] == "released", body["job"]["error"]
    auditor = world.as_("auditor@audit", "audit", "auditor")
    entries = auditor.get("/v1/audit/entries", params={"limit": 1000}).json()["items"]
    accepted = [e["event"] for e in entries if e["event"]["type"] == "job.accepted"]
    assert accepted[-1]["details"]["purpose_ids"] == ids
    assert set(accepted[-1]["details"]["purposes"].values()) == set(ids)


def test_a_description_alone_is_not_an_approval(
    analyst: Caller, officer: Caller, approved_template: dict[str, Any]
) -> None:
    problem = agree(analyst, officer, [], code="missing_approval")
    assert problem["dataset"] in DATASETS


def test_no_purpose_at_all_is_missing(
    analyst: Caller, officer: Caller, approved_template: dict[str, Any]
) -> None:
    denied = analyst.submit({**SUBMIT, "purpose": "", "purposes": []})
    assert denied.status_code == 403
    assert denied.json()["reason_code"] == "missing_purpose"
    asked = check(
        officer, roles=["analyst"], department="stats", template=SUBMIT["template"], purposes=[]
    )
    assert asked["reason_code"] == "missing_purpose"


def test_a_requested_or_rejected_purpose_is_refused(
    analyst: Caller,
    officer: Caller,
    owners: dict[str, Caller],
    approved_template: dict[str, Any],
) -> None:
    ids = list(analyst.purposes)
    asked = analyst.post(
        "/v1/purposes", json={"dataset": "tax.filings", "purpose": "another campaign"}
    ).json()
    agree(analyst, officer, [ids[0], asked["id"]], code="missing_approval")
    rejected = owners["tax"].post(f"/v1/purposes/{asked['id']}/rejections", json={})
    assert rejected.status_code == 201, rejected.text
    agree(analyst, officer, [ids[0], asked["id"]], code="missing_approval")


def test_an_expired_purpose_is_refused_at_submission_and_by_the_worker(
    world: World, analyst: Caller, officer: Caller, approved_template: dict[str, Any]
) -> None:
    ids = list(analyst.purposes)
    engine = sa.create_engine(world.settings.resolved_database_url)
    try:
        with engine.begin() as conn:  # time passes: the tax owner's approval lapses
            conn.execute(
                sa.text("UPDATE purposes SET expires_at = :t WHERE id = :id"),
                {"t": datetime.now(UTC) - timedelta(days=1), "id": ids[1]},
            )
    finally:
        engine.dispose()
    problem = agree(analyst, officer, ids, code="expired_purpose")
    assert problem["dataset"] == "tax.filings"


def test_another_departments_or_datasets_purpose_is_refused(
    world: World,
    analyst: Caller,
    officer: Caller,
    owners: dict[str, Caller],
    approved_template: dict[str, Any],
) -> None:
    ids = list(analyst.purposes)
    other = world.as_("analyst@health", "health", "analyst")
    theirs = grant_purpose(other, owners["tax"], "tax.filings")
    agree(analyst, officer, [ids[0], theirs["id"]], code="missing_approval")
    unknown = "00000000-0000-4000-8000-000000000000"
    agree(analyst, officer, [*ids, unknown], code="missing_approval")
