"""Auditors read and prove the log through the API; the log holds fingerprints, not values."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from audit import leaf_hash, verify_consistency, verify_inclusion
from tests.integration.conftest import Caller, World
from tests.integration.test_job_path import SUBMIT, run_job


def entries(auditor: Caller) -> list[dict[str, Any]]:
    response = auditor.get("/v1/audit/entries", params={"limit": 1000})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


@pytest.mark.slow
def test_every_decision_is_logged_with_fingerprints_not_values(
    world: World, analyst: Caller, approved_template: dict[str, Any]
) -> None:
    run_job(analyst)
    analyst.submit({**SUBMIT, "purpose": "", "purposes": []})  # denied: conditional needs purpose
    auditor = world.as_("auditor@audit", "audit", "auditor")
    items = entries(auditor)
    types = [item["event"]["type"] for item in items]
    for expected in (
        "policy.seeded",
        "dataset.registered",
        "template.proposed",
        "template.approved",
        "job.accepted",
        "job.started",
        "job.released",
        "result.read",
        "job.denied",
    ):
        assert expected in types, expected
    raw = b"".join(base64.b64decode(item["body"]) for item in items)
    assert b"manufacturing" not in raw and b"compliance campaign" not in raw
    accepted = next(i["event"] for i in items if i["event"]["type"] == "job.accepted")
    assert accepted["details"]["parameters"].startswith("hmac-sha256:")
    assert accepted["details"]["providers"] == ["market", "tax"]
    denied = next(i["event"] for i in items if i["event"]["type"] == "job.denied")
    assert denied["allowed"] is False and "purpose" in denied["reason"]
    for item in items:
        assert item["leaf_hash"] == leaf_hash(base64.b64decode(item["body"])).hex()


def test_auditor_reads_are_themselves_audited(world: World) -> None:
    auditor = world.as_("auditor@audit", "audit", "auditor")
    entries(auditor)
    reads = [i for i in entries(auditor) if i["event"]["type"] == "audit.read"]
    assert reads and reads[0]["event"]["actor"]["subject"] == "auditor@audit"


def test_analyst_cannot_read_the_audit_log(world: World, analyst: Caller) -> None:
    response = analyst.get("/v1/audit/entries")
    assert response.status_code == 403
    auditor = world.as_("auditor@audit", "audit", "auditor")
    assert any(i["event"]["type"] == "audit.denied" for i in entries(auditor))


@pytest.mark.slow
def test_proofs_from_the_api_verify_against_the_signed_roots(
    world: World, analyst: Caller, approved_template: dict[str, Any]
) -> None:
    auditor = world.as_("auditor@audit", "audit", "auditor")
    first = auditor.get("/v1/audit/checkpoint").json()["checkpoint"]
    run_job(analyst)
    second = auditor.get("/v1/audit/checkpoint").json()["checkpoint"]
    old_size, old_root = int(first.split("\n")[1]), base64.b64decode(first.split("\n")[2])
    new_size, new_root = int(second.split("\n")[1]), base64.b64decode(second.split("\n")[2])
    assert new_size > old_size
    proof = auditor.get(
        "/v1/audit/proofs/consistency", params={"first": old_size, "second": new_size}
    ).json()
    verify_consistency(
        old_size, new_size, [bytes.fromhex(p) for p in proof["proof"]], old_root, new_root
    )
    inclusion = auditor.get(
        "/v1/audit/proofs/inclusion", params={"index": 1, "size": new_size}
    ).json()
    verify_inclusion(
        bytes.fromhex(inclusion["leaf_hash"]),
        1,
        new_size,
        [bytes.fromhex(p) for p in inclusion["proof"]],
        new_root,
    )
    bad = auditor.get("/v1/audit/proofs/inclusion", params={"index": new_size + 5})
    assert bad.status_code == 422


def test_policy_check_explains_a_decision(world: World) -> None:
    officer = world.as_("officer@security", "security", "security_officer")
    allowed = officer.post(
        "/v1/policies/check",
        json={
            "roles": ["analyst"],
            "department": "stats",
            "object": "job",
            "action": "submit",
        },
    ).json()
    assert allowed["allowed"] and allowed["rule"] == "p, analyst, *, job, submit"
    denied = officer.post(
        "/v1/policies/check",
        json={
            "roles": ["analyst"],
            "department": "stats",
            "object": "data/none/core/civil.residents",
            "action": "query:aggregate",
        },
    ).json()
    assert not denied["allowed"] and denied["rule"] is None
    assert "query:aggregate" in denied["reason"]
    bad = officer.post(
        "/v1/policies/check",
        json={
            "roles": ["analyst"],
            "department": "stats",
            "object": "job, x",
            "action": "submit",
        },
    )
    assert bad.status_code == 422
    history = officer.get("/v1/policies/history").json()["items"]
    assert history[0]["version"] == 1
