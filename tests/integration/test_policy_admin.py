"""Four-eyes policy administration through the real app, on SQLite and PostgreSQL: proposals
with their impact, approval by a second officer, rejection, history, diff, rollback, YAML
export/import, explained checks and denials, and the audit trail of all of it."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.demo import documents
from tests.integration.conftest import Caller, World
from tests.integration.test_job_path import SUBMIT

SUBMIT_RULE = {"role": "analyst", "department": "*", "object": "job", "action": "submit"}
TAX_AGGREGATE = {
    "role": "analyst",
    "department": "*",
    "object": "data/conditional/important/*",
    "action": "query:aggregate",
    "purpose": "approved",
}


@pytest.fixture
def officer_a(world: World) -> Caller:
    return world.as_("officer-a@security", "security", "security_officer")


@pytest.fixture
def officer_b(world: World) -> Caller:
    return world.as_("officer-b@security", "security", "security_officer")


def events(world: World, type_: str) -> list[dict[str, Any]]:
    auditor = world.as_("auditor@audit", "audit", "auditor")
    items = auditor.get("/v1/audit/entries", params={"limit": 1000}).json()["items"]
    return [i["event"] for i in items if i["event"]["type"] == type_]


def propose(officer: Caller, **body: Any) -> dict[str, Any]:
    response = officer.post("/v1/policies", json=body)
    assert response.status_code == 201, response.text
    out: dict[str, Any] = response.json()
    return out


def approve(officer: Caller, proposal_id: str) -> dict[str, Any]:
    response = officer.post(f"/v1/policies/proposals/{proposal_id}/approvals", json={})
    assert response.status_code == 201, response.text
    out: dict[str, Any] = response.json()
    return out


def check(officer: Caller, **body: Any) -> dict[str, Any]:
    response = officer.post("/v1/policies/check", json=body)
    assert response.status_code == 200, response.text
    out: dict[str, Any] = response.json()
    return out


def test_a_change_is_live_only_after_a_second_officer_approves(
    world: World, officer_a: Caller, officer_b: Caller
) -> None:
    question = {"roles": ["analyst"], "department": "stats", "object": "job", "action": "submit"}
    proposal = propose(officer_a, remove=[SUBMIT_RULE], note="freeze job submissions")
    assert proposal["status"] == "proposed" and proposal["base_version"] == 1
    assert proposal["removed"] == ["p, analyst, *, job, submit"]
    assert check(officer_a, **question)["allowed"], "a proposal is not live"

    own = officer_a.post(f"/v1/policies/proposals/{proposal['id']}/approvals", json={})
    assert own.status_code == 403
    assert own.json()["reason_code"] == "four_eyes"
    assert check(officer_a, **question)["allowed"]

    approved = approve(officer_b, proposal["id"])
    assert approved["status"] == "approved" and approved["result_version"] == 2
    after = check(officer_a, **question)
    assert not after["allowed"] and after["policy_version"] == 2
    assert after["reason_code"] == "missing_role"
    history = officer_a.get("/v1/policies/history").json()["items"]
    assert history[0]["version"] == 2
    assert history[0]["approved_by"] == "officer-b@security"
    assert history[0]["created_by"] == "officer-a@security"
    assert history[0]["proposal"] == proposal["id"]

    proposed = events(world, "policy.proposed")[-1]
    assert proposed["actor"]["subject"] == "officer-a@security"
    assert proposed["rule"] == "p, security_officer, *, policy, propose"
    assert proposed["details"]["policy_version"] == 1
    assert proposed["details"]["removed"] == ["p, analyst, *, job, submit"]
    refused = [e for e in events(world, "policy.denied") if e["action"] == "approve"]
    assert refused and refused[-1]["details"]["reason_code"] == "four_eyes"
    done = events(world, "policy.approved")[-1]
    assert done["actor"]["subject"] == "officer-b@security"
    assert done["rule"] == "p, security_officer, *, policy, approve"
    assert done["details"]["policy_version"] == 2 and done["details"]["decided_under"] == 1


def test_a_rejected_proposal_never_goes_live(
    world: World, officer_a: Caller, officer_b: Caller
) -> None:
    proposal = propose(officer_a, remove=[SUBMIT_RULE])
    rejected = officer_b.post(
        f"/v1/policies/proposals/{proposal['id']}/rejections", json={"comment": "no"}
    )
    assert rejected.status_code == 201 and rejected.json()["status"] == "rejected"
    late = officer_b.post(f"/v1/policies/proposals/{proposal['id']}/approvals", json={})
    assert late.status_code == 409
    assert officer_a.get("/v1/policies").json()["version"] == 1
    event = events(world, "policy.rejected")[-1]
    assert event["actor"]["subject"] == "officer-b@security"
    assert event["details"]["proposal"] == proposal["id"]
    assert event["details"]["policy_version"] == 1
    assert event["rule"] == "p, security_officer, *, policy, approve"


@pytest.mark.slow
def test_the_impact_names_department_template_and_action(
    world: World, officer_a: Caller, approved_template: dict[str, Any]
) -> None:
    proposal = propose(officer_a, remove=[TAX_AGGREGATE])
    impact = proposal["impact"]
    template_changes = [c for c in impact["changes"] if c["template"]]
    assert {
        "department": "stats",
        "role": "analyst",
        "template": "enterprises-without-tax-filing@1",
        "object": None,
        "action": "submit",
        "purposes": ["approved"],
        "before": "allow",
        "after": "deny",
    } in template_changes
    assert any(c["department"] == "*" for c in template_changes), "any other department"
    assert impact["summary"]["revoked"] == impact["summary"]["changed"] > 0
    shown = officer_a.get(f"/v1/policies/proposals/{proposal['id']}").json()
    assert shown["impact"] == impact
    listed = officer_a.get("/v1/policies/proposals", params={"status": "proposed"}).json()
    assert [p["id"] for p in listed["items"]] == [proposal["id"]]


def test_history_diff_and_a_four_eyes_rollback(
    world: World, officer_a: Caller, officer_b: Caller
) -> None:
    approve(officer_b, propose(officer_a, remove=[SUBMIT_RULE])["id"])
    diff = officer_a.get("/v1/policies/diff", params={"from": 1, "to": 2}).json()
    assert diff == {"from": 1, "to": 2, "added": [], "removed": ["p, analyst, *, job, submit"]}

    back = officer_b.post("/v1/policies/rollback", json={"version": 1, "note": "undo"})
    assert back.status_code == 201, back.text
    proposal = back.json()
    assert proposal["kind"] == "rollback" and proposal["rollback_to"] == 1
    assert proposal["added"] == ["p, analyst, *, job, submit"]
    own = officer_b.post(f"/v1/policies/proposals/{proposal['id']}/approvals", json={})
    assert own.status_code == 403
    assert officer_a.get("/v1/policies").json()["version"] == 2

    approve(officer_a, proposal["id"])
    v1, v3 = (officer_a.get("/v1/policies", params={"version": v}).json() for v in (1, 3))
    assert sorted(v3["rules"]) == sorted(v1["rules"])
    assert officer_a.get("/v1/policies/diff", params={"from": 1, "to": 3}).json()["added"] == []
    assert events(world, "policy.rollback_proposed")[-1]["details"]["rollback_to"] == 1
    rolled = events(world, "policy.rolled_back")[-1]
    assert rolled["details"]["policy_version"] == 3
    assert rolled["actor"]["subject"] == "officer-a@security"


def test_export_then_import_round_trips_through_yaml(
    world: World, officer_a: Caller, officer_b: Caller
) -> None:
    exported = officer_a.get("/v1/policies/export")
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("application/yaml")
    text = exported.text
    assert text.startswith("format: insitu-policy/1\nversion: 1\n")
    edited = "\n".join(
        line for line in text.splitlines() if "object: job, action: submit" not in line
    )
    assert edited != text.rstrip("\n")
    imported = officer_a.post(
        "/v1/policies/import",
        content=edited.encode(),
        params={"note": "from git"},
        headers={"Content-Type": "application/yaml"},
    )
    assert imported.status_code == 201, imported.text
    proposal = imported.json()
    assert proposal["kind"] == "import" and proposal["removed"] == ["p, analyst, *, job, submit"]
    approve(officer_b, proposal["id"])
    again = officer_a.get("/v1/policies/export").text
    assert again == edited.replace("version: 1", "version: 2") + "\n"
    unchanged = officer_a.post("/v1/policies/import", content=again.encode())
    assert unchanged.status_code == 422


def test_a_proposal_on_an_older_version_cannot_be_approved(
    world: World, officer_a: Caller, officer_b: Caller
) -> None:
    first = propose(officer_a, remove=[SUBMIT_RULE])
    second = propose(officer_a, add=[{**SUBMIT_RULE, "object": "template", "action": "approve"}])
    approve(officer_b, first["id"])
    stale = officer_b.post(f"/v1/policies/proposals/{second['id']}/approvals", json={})
    assert stale.status_code == 409
    assert stale.json()["policy_version"] == 2
    assert officer_a.get(f"/v1/policies/proposals/{second['id']}").json()["status"] == "stale"
    live = officer_a.get("/v1/policies").json()
    assert live["version"] == 2 and "p, analyst, *, job, submit" not in live["rules"]
    refused = events(world, "policy.approval_refused")[-1]
    assert refused["details"]["reason_code"] == "stale"
    assert refused["details"]["base_version"] == 1
    assert (
        officer_a.post("/v1/policies", json={"remove": [SUBMIT_RULE], "base_version": 1})
    ).status_code == 409


@pytest.mark.slow
def test_a_denied_job_carries_the_explanation(
    world: World, analyst: Caller, officer_a: Caller, approved_template: dict[str, Any]
) -> None:
    denied = analyst.submit({**SUBMIT, "purpose": "", "purposes": []})
    assert denied.status_code == 403
    problem = denied.json()
    assert problem["reason_code"] == "missing_purpose"
    assert problem["dataset"] == "market.enterprise_registry"
    assert problem["policy_version"] == 1
    assert problem["rule"] is None
    assert "purpose" in problem["reason"] and problem["reason"] == problem["detail"]
    asked = check(
        officer_a,
        roles=["analyst"],
        department="stats",
        template="enterprises-without-tax-filing",
    )
    assert not asked["allowed"]
    assert (asked["reason_code"], asked["dataset"]) == ("missing_purpose", problem["dataset"])
    logged = events(world, "job.denied")[-1]
    assert logged["details"]["reason_code"] == "missing_purpose"
    assert logged["details"]["dataset"] == "market.enterprise_registry"
    assert logged["details"]["policy_version"] == 1


def test_a_job_on_unshared_data_names_the_share_class(
    world: World, analyst: Caller, owners: dict[str, Caller], registered: None
) -> None:
    proposed = analyst.post_yaml("/v1/templates", documents.RESIDENTS_TEMPLATE)
    assert proposed.status_code == 201, proposed.text
    body = proposed.json()
    owners["civil"].post(
        f"/v1/templates/{body['id']}/versions/1/approvals",
        json={"content_hash": body["content_hash"]},
    )
    denied = analyst.post(
        "/v1/jobs",
        json={"template": body["id"], "parameters": {"born_since": 1990}, "purpose": "x"},
    )
    assert denied.status_code == 403, denied.text
    problem = denied.json()
    assert problem["reason_code"] == "share_class"
    assert problem["dataset"] == "civil.residents"
    assert "'none'" in problem["reason"]


def test_a_template_check_lists_every_step_with_its_rule(
    world: World, officer_a: Caller, analyst: Caller, approved_template: dict[str, Any]
) -> None:
    asked = check(
        officer_a,
        roles=["analyst"],
        department="stats",
        subject="someone@stats",
        template="enterprises-without-tax-filing",
        purpose="compliance campaign",
        purposes=analyst.purposes,
    )
    assert asked["allowed"] and asked["reason_code"] == "granted"
    assert [s["object"] for s in asked["steps"]] == [
        "job",
        "data/conditional/general/market.enterprise_registry",
        "data/conditional/important/tax.filings",
    ]
    assert all(s["rule"] for s in asked["steps"])
    checked = events(world, "policy.checked")[-1]
    assert checked["allowed"] is True and checked["rule"] == asked["rule"]
    assert checked["details"]["policy_version"] == 1
    assert checked["details"]["checked"]["subject"] == "someone@stats"
    assert checked["actor"]["subject"] == "officer-a@security"
    # every step's rule is in the audit, not only the last one
    assert [s["rule"] for s in checked["details"]["steps"]] == [s["rule"] for s in asked["steps"]]


@pytest.mark.slow
def test_an_accepted_job_records_the_rule_that_granted_each_dataset(
    world: World, analyst: Caller, approved_template: dict[str, Any]
) -> None:
    assert analyst.submit(SUBMIT).status_code == 202
    accepted = events(world, "job.accepted")[-1]
    assert accepted["rule"] == "p, analyst, *, job, submit"
    grants = {g["dataset"]: g for g in accepted["details"]["grants"]}
    assert grants["market.enterprise_registry"]["rule"] == (
        "p, analyst, *, data/conditional/general/*, query:aggregate, approved"
    )
    assert grants["tax.filings"]["rule"] == (
        "p, analyst, *, data/conditional/important/*, query:aggregate, approved"
    )
    assert {g["policy_version"] for g in grants.values()} == {1}


def test_only_security_officers_administer_policy(world: World, analyst: Caller) -> None:
    response = analyst.post("/v1/policies", json={"remove": [SUBMIT_RULE]})
    assert response.status_code == 403
    assert response.json()["reason_code"] == "missing_role"
    assert response.json()["policy_version"] == 1
    assert analyst.get("/v1/policies/export").status_code == 403
    auditor = world.as_("auditor@audit", "audit", "auditor")
    assert auditor.post("/v1/policies/rollback", json={"version": 1}).status_code == 403
    denials = events(world, "policy.denied")
    assert {e["actor"]["subject"] for e in denials} >= {"analyst@stats", "auditor@audit"}
    assert all("policy_version" in e["details"] for e in denials)


def test_policy_reads_are_audited_with_rule_and_version(world: World, officer_a: Caller) -> None:
    officer_a.get("/v1/policies")
    officer_a.get("/v1/policies/history")
    reads = events(world, "policy.read")
    assert [r["details"]["read"] for r in reads][-2:] == ["version 1", "history"]
    assert all(r["rule"] == "p, security_officer, *, policy, read" for r in reads)
    assert all(r["details"]["policy_version"] == 1 for r in reads)


@pytest.mark.slow
def test_a_check_refuses_conditional_data_without_a_purpose_like_the_job(
    world: World,
    analyst: Caller,
    officer_a: Caller,
    officer_b: Caller,
    approved_template: dict[str, Any],
) -> None:
    """A rule without a purpose condition on conditional data does not lift the gateway's own
    rule that such data needs an approved purpose: the check must say what the job gets."""
    loose = {
        "role": "analyst",
        "department": "*",
        "object": "data/conditional/*",
        "action": "query:aggregate",
    }
    approve(officer_b, propose(officer_a, add=[loose])["id"])
    denied = analyst.submit({**SUBMIT, "purpose": "", "purposes": []})
    assert denied.status_code == 403, denied.text
    problem = denied.json()
    asked = check(officer_a, roles=["analyst"], department="stats", template=SUBMIT["template"])
    assert not asked["allowed"]
    assert (asked["reason_code"], asked["dataset"]) == (
        problem["reason_code"],
        problem["dataset"],
    )


@pytest.mark.slow
def test_a_check_without_version_asks_about_the_version_a_job_would_run(
    world: World, analyst: Caller, officer_a: Caller, approved_template: dict[str, Any]
) -> None:
    newer = documents.NO_FILING_TEMPLATE.replace("version: 1", "version: 2")
    assert analyst.post_yaml("/v1/templates", newer).status_code == 201  # proposed, not approved
    assert analyst.submit(SUBMIT).status_code == 202  # runs version 1
    asked = check(
        officer_a,
        roles=["analyst"],
        department="stats",
        template=SUBMIT["template"],
        purpose="compliance campaign",
        purposes=analyst.purposes,
    )
    assert asked["allowed"], asked["reason"]
    assert asked["template"] == f"{SUBMIT['template']}@1"


@pytest.mark.slow
def test_deciding_a_decided_proposal_again_is_refused_and_audited(
    world: World, officer_a: Caller, officer_b: Caller
) -> None:
    proposal = propose(officer_a, remove=[SUBMIT_RULE])
    approve(officer_b, proposal["id"])
    path = f"/v1/policies/proposals/{proposal['id']}"
    assert officer_b.post(f"{path}/approvals", json={}).status_code == 409
    assert officer_b.post(f"{path}/rejections", json={}).status_code == 409
    assert officer_a.get(path).json()["status"] == "approved"
    for type_ in ("policy.approval_refused", "policy.rejection_refused"):
        refused = events(world, type_)[-1]
        assert refused["allowed"] is False
        assert refused["actor"]["subject"] == "officer-b@security"
        assert refused["details"]["reason_code"] == "decided"
        assert refused["details"]["policy_version"] == 2
        assert refused["rule"] == "p, security_officer, *, policy, approve"


def test_a_check_canonicalises_names_like_a_token_and_refuses_a_forged_subject(
    world: World, officer_a: Caller
) -> None:
    asked = check(
        officer_a, roles=["Analyst"], department="ＳＴＡＴＳ", object="job", action="submit"
    )
    assert asked["allowed"] and asked["rule"] == "p, analyst, *, job, submit"
    before = len(events(world, "policy.checked"))
    forged = officer_a.post(
        "/v1/policies/check",
        json={
            "roles": ["analyst"],
            "department": "stats",
            "object": "job",
            "action": "submit",
            "subject": "x\n\x1b[2Jpolicy.approved by officer-b",
        },
    )
    assert forged.status_code == 422
    assert len(events(world, "policy.checked")) == before
