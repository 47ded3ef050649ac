"""Attacks on policy administration, each through the real app on SQLite and PostgreSQL.

matcher injection, ReDoS patterns, separators / quotes / control characters, over-long values,
attributes smuggled in a request, a proposer approving their own change, a stale writer, a
change that does not reach another worker. Every test fails if its defence is removed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.api import create_app
from policies.enforcer import model_text
from tests.integration import conftest as integration
from tests.integration.conftest import Caller, World

# The integration tier's fixtures (the real app on SQLite and PostgreSQL), used here by name.
world, analyst, owners, registered = (
    integration.world,
    integration.analyst,
    integration.owners,
    integration.registered,
)
approved_template, demo_data_dir = integration.approved_template, integration.demo_data_dir

GOOD = {"role": "auditor", "department": "*", "object": "budget", "action": "read"}
# `p, auditor, *, budget, read` is not in the default policy, so GOOD is a valid addition.


@pytest.fixture
def officer_a(world: World) -> Caller:
    return world.as_("officer-a@security", "security", "security_officer")


@pytest.fixture
def officer_b(world: World) -> Caller:
    return world.as_("officer-b@security", "security", "security_officer")


def proposals(officer: Caller) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = officer.get("/v1/policies/proposals").json()["items"]
    return items


def refused(officer: Caller, **fields: Any) -> dict[str, Any]:
    """Propose GOOD with `fields` changed; the gateway must refuse it and store nothing."""
    before = len(proposals(officer))
    response = officer.post("/v1/policies", json={"add": [{**GOOD, **fields}]})
    assert response.status_code == 422, response.text
    assert len(proposals(officer)) == before
    assert officer.get("/v1/policies").json()["version"] == 1
    body: dict[str, Any] = response.json()
    return body


def test_the_valid_baseline_is_accepted(world: World, officer_a: Caller) -> None:
    """The attacks below differ from this accepted proposal only in the attacking value."""
    response = officer_a.post("/v1/policies", json={"add": [GOOD]})
    assert response.status_code == 201, response.text


# --- matcher injection -------------------------------------------------------------------


INJECTIONS = [
    {"role": "analyst or True"},
    {"role": "analyst || true"},
    {"department": "tax or True"},
    {"object": "job or True"},
    {"object": "job) || (true"},
    {"action": "read or True"},
    {"object": "data/*", "action": "query:dp", "purpose": "approved or True"},
    {"object": 'job" || "1" == "1'},
    {"role": "eval(p.sub)"},
]


def test_matcher_injection_in_a_rule_value_is_refused(world: World, officer_a: Caller) -> None:
    for fields in INJECTIONS:
        problem = refused(officer_a, **fields)
        assert problem["type"].endswith("invalid-policy"), fields


def test_no_matcher_text_is_accepted_anywhere(world: World, officer_a: Caller) -> None:
    matcher = "m = r.sub == p.sub || true"
    response = officer_a.post("/v1/policies", json={"add": [GOOD], "matcher": matcher})
    assert response.status_code == 422
    response = officer_a.post("/v1/policies", json={"add": [{**GOOD, "matcher": matcher}]})
    assert response.status_code == 422
    document = f"format: insitu-policy/1\nmodel: '{matcher}'\nrules: []\n"
    assert officer_a.post("/v1/policies/import", content=document.encode()).status_code == 422
    assert proposals(officer_a) == []


def test_injection_in_an_imported_document_is_refused(world: World, officer_a: Caller) -> None:
    document = (
        "format: insitu-policy/1\nrules:\n"
        "  - {role: analyst, department: '*', object: 'policy or True', action: approve}\n"
    )
    response = officer_a.post("/v1/policies/import", content=document.encode())
    assert response.status_code == 422
    assert "rules[0]" in response.json()["detail"]
    assert proposals(officer_a) == []


# --- ReDoS ---------------------------------------------------------------------------------


REDOS = ["^(a+)+$", "(a|aa)+", "data/(a+)+/*", "(.*a){20}", "data/conditional/[a-z]+"]


def test_regular_expressions_are_refused_as_values(world: World, officer_a: Caller) -> None:
    for pattern in REDOS:
        if "/" in pattern:
            refused(officer_a, object=pattern, action="query:dp")
        else:
            refused(officer_a, object=pattern)
            refused(officer_a, role=pattern)


def test_the_model_matches_objects_without_regular_expressions() -> None:
    matcher = next(line for line in model_text().splitlines() if line.startswith("m = "))
    for function in ("regexMatch", "keyMatch2", "keyMatch3", "keyMatch4", "keyMatch5"):
        assert function not in matcher  # these compile the rule value into a regex
    assert "globMatch" not in matcher and "eval(" not in matcher
    assert "keyMatch(r.obj, p.obj)" in matcher


# --- separators, quotes, control characters --------------------------------------------------


SEPARATORS = [",", '"', "'", "`", "\n", "\r", "\t", "\x00", "\x1b", " ", "\u2028", "\u00a0"]


def test_separators_quotes_and_control_characters_are_refused(
    world: World, officer_a: Caller
) -> None:
    for field in ("role", "department", "object", "action"):
        for char in SEPARATORS:
            value = {**GOOD, "department": "tax"}[field]
            refused(officer_a, **{field: value + char + "x"})


def test_a_comma_cannot_shift_fields_of_a_check(world: World, officer_a: Caller) -> None:
    response = officer_a.post(
        "/v1/policies/check",
        json={"roles": ["analyst,admin"], "department": "tax", "object": "job", "action": "read"},
    )
    assert response.status_code == 422


# --- over-long values ------------------------------------------------------------------------


def test_over_long_values_are_refused(world: World, officer_a: Caller) -> None:
    for field, length in [("role", 65), ("department", 65), ("object", 201), ("role", 100_000)]:
        problem = refused(officer_a, **{field: "a" * length})
        assert "a" * 100 not in problem["detail"], "a refusal never echoes a long value"


def test_an_over_long_value_in_a_document_is_refused(world: World, officer_a: Caller) -> None:
    long_role = "a" * 300
    document = (
        "format: insitu-policy/1\nrules:\n"
        f"  - {{role: {long_role}, department: '*', object: job, action: read}}\n"
    )
    response = officer_a.post("/v1/policies/import", content=document.encode())
    assert response.status_code == 422
    assert "at most 256" in response.json()["detail"]
    assert long_role not in response.text


# --- attributes smuggled in the request ---------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"share_class": "unconditional"},
        {"classification": "general"},
        {"kind": "dp"},
        {"purpose_state": "approved"},
    ],
)
@pytest.mark.slow
def test_a_job_cannot_carry_its_own_attributes(
    world: World, analyst: Caller, approved_template: dict[str, Any], extra: dict[str, str]
) -> None:
    body = {
        "template": "enterprises-without-tax-filing",
        "parameters": {"year": 2024, "industry": "manufacturing"},
        "purpose": "",
        **extra,
    }
    assert analyst.post("/v1/jobs", json=body).status_code == 422
    body.pop(next(iter(extra)))
    denied = analyst.post("/v1/jobs", json=body)
    assert denied.status_code == 403
    assert denied.json()["reason_code"] == "missing_purpose"


def test_a_check_takes_share_class_and_classification_from_the_catalogue(
    world: World, officer_a: Caller, registered: None
) -> None:
    question = {"roles": ["analyst"], "department": "stats", "action": "query:aggregate"}
    smuggled = officer_a.post(
        "/v1/policies/check", json={**question, "dataset": "civil.residents", "share_class": "x"}
    )
    assert smuggled.status_code == 422
    # civil.residents is catalogued as `none` / important: claiming another class is refused
    forged = officer_a.post(
        "/v1/policies/check",
        json={**question, "object": "data/unconditional/general/civil.residents"},
    )
    assert forged.status_code == 422
    truth = officer_a.post("/v1/policies/check", json={**question, "dataset": "civil.residents"})
    assert truth.status_code == 200
    assert not truth.json()["allowed"] and truth.json()["reason_code"] == "share_class"


# --- the proposer approving their own proposal ---------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    ["officer-a@security", "OFFICER-A@security", "ｏｆｆｉｃｅｒ-ａ@security"],
)
def test_the_proposer_cannot_approve_their_own_proposal(
    world: World, officer_a: Caller, subject: str
) -> None:
    proposal = officer_a.post("/v1/policies", json={"add": [GOOD]}).json()
    same = world.as_(subject, "other_dept", "security_officer")
    response = same.post(f"/v1/policies/proposals/{proposal['id']}/approvals", json={})
    assert response.status_code == 403
    assert response.json()["reason_code"] == "four_eyes"
    status = officer_a.get(f"/v1/policies/proposals/{proposal['id']}").json()["status"]
    assert status == "proposed"
    assert officer_a.get("/v1/policies").json()["version"] == 1


# --- a stale writer and a change that must reach another worker ---------------------------


@pytest.fixture
def second_worker(world: World) -> Iterator[Caller]:
    """Another gateway (its own engine, pool and LivePolicy) on the same store."""
    app = create_app(world.settings, run_workers=False)
    with TestClient(app) as client:
        yield Caller(client, world.token("officer-b@security", "security", "security_officer"))


def test_a_worker_holding_an_old_version_cannot_write_it_back(
    world: World, officer_a: Caller, officer_b: Caller, second_worker: Caller
) -> None:
    revoke = {"role": "analyst", "department": "*", "object": "job", "action": "submit"}
    old = officer_a.post("/v1/policies", json={"add": [GOOD]}).json()
    assert second_worker.get("/v1/policies").json()["version"] == 1  # its engine: version 1
    revoking = officer_a.post("/v1/policies", json={"remove": [revoke]}).json()
    approved = officer_b.post(f"/v1/policies/proposals/{revoking['id']}/approvals", json={})
    assert approved.status_code == 201
    stale = second_worker.post(f"/v1/policies/proposals/{old['id']}/approvals", json={})
    assert stale.status_code == 409
    live = officer_a.get("/v1/policies").json()
    assert live["version"] == 2 and "p, analyst, *, job, submit" not in live["rules"]
    # a proposal made on the stale worker is computed from the store, not from its engine
    fresh = second_worker.post("/v1/policies", json={"add": [GOOD]}).json()
    assert fresh["base_version"] == 2 and fresh["added"] == ["p, auditor, *, budget, read"]
    assert fresh["removed"] == []


def test_two_approvals_racing_on_one_version_store_one(
    world: World, officer_a: Caller, officer_b: Caller, second_worker: Caller
) -> None:
    first = officer_a.post("/v1/policies", json={"add": [GOOD]}).json()
    other = {**GOOD, "object": "job"}
    second = officer_a.post("/v1/policies", json={"add": [other]}).json()
    results: list[int] = []
    barrier = threading.Barrier(2)

    def approve(caller: Caller, proposal_id: str) -> None:
        barrier.wait()
        path = f"/v1/policies/proposals/{proposal_id}/approvals"
        results.append(caller.post(path, json={}).status_code)

    threads = [
        threading.Thread(target=approve, args=(officer_b, first["id"])),
        threading.Thread(target=approve, args=(second_worker, second["id"])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [201, 409]
    history = officer_a.get("/v1/policies/history").json()["items"]
    assert [h["version"] for h in history] == [2, 1]


@pytest.mark.slow
def test_a_change_reaches_another_worker_within_the_refresh_interval(
    world: World, officer_a: Caller, officer_b: Caller, second_worker: Caller
) -> None:
    question = {"roles": ["analyst"], "department": "stats", "object": "job", "action": "submit"}
    assert second_worker.post("/v1/policies/check", json=question).json()["allowed"]
    revoke = {"role": "analyst", "department": "*", "object": "job", "action": "submit"}
    proposal = officer_a.post("/v1/policies", json={"remove": [revoke]}).json()
    officer_b.post(f"/v1/policies/proposals/{proposal['id']}/approvals", json={})
    changed_at = time.monotonic()
    # the approving worker sees it at once
    assert not officer_a.post("/v1/policies/check", json=question).json()["allowed"]
    assert world.settings.policy_refresh_s <= 2.0
    time.sleep(max(0.0, changed_at + world.settings.policy_refresh_s + 0.05 - time.monotonic()))
    answer = second_worker.post("/v1/policies/check", json=question).json()
    assert answer["policy_version"] == 2 and not answer["allowed"]
    denied = Caller(second_worker.client, world.token("a@stats", "stats", "analyst")).post(
        "/v1/jobs", json={"template": "x", "parameters": {}}
    )
    assert denied.status_code == 403 and denied.json()["policy_version"] == 2


# --- officers granting their own role data or results ------------------------------------------


@pytest.mark.parametrize(
    "rule",
    [
        {"object": "result", "action": "read"},
        {"object": "job", "action": "submit"},
        {"object": "audit", "action": "export"},
        {"object": "data/*", "action": "query:list"},
    ],
)
def test_officers_cannot_give_their_own_role_data_or_results(
    world: World, officer_a: Caller, rule: dict[str, str]
) -> None:
    grant = {"role": "security_officer", "department": "*", **rule}
    problem = refused(officer_a, **grant)
    assert "security officers" in problem["detail"]
    document = (
        "format: insitu-policy/1\nrules:\n"
        + officer_a.get("/v1/policies/export").text.split("rules:\n", 1)[1]
        + f"  - {{role: security_officer, department: '*', object: '{rule['object']}', "
        f"action: '{rule['action']}'}}\n"
    )
    imported = officer_a.post("/v1/policies/import", content=document.encode())
    assert imported.status_code == 422, imported.text
    assert proposals(officer_a) == []


def test_notes_and_comments_cannot_carry_terminal_escapes(
    world: World, officer_a: Caller, officer_b: Caller
) -> None:
    escape = "fine\x1b[1A\x1b[2K+ nothing to see"
    assert officer_a.post("/v1/policies", json={"add": [GOOD], "note": escape}).status_code == 422
    assert (
        officer_a.post("/v1/policies/rollback", json={"version": 1, "note": escape}).status_code
        == 422
    )
    document = officer_a.get("/v1/policies/export").text
    imported = officer_a.post("/v1/policies/import", content=document, params={"note": escape})
    assert imported.status_code == 422
    proposal = officer_a.post("/v1/policies", json={"add": [GOOD], "note": "plain"}).json()
    path = f"/v1/policies/proposals/{proposal['id']}/rejections"
    assert officer_b.post(path, json={"comment": escape}).status_code == 422
    assert [p["status"] for p in proposals(officer_a)] == ["proposed"]
