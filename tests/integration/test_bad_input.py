"""Bad input gets a clear RFC 9457 problem and loses nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest
import sqlalchemy as sa
from joserfc import jwt

from gateway import home
from gateway.auth.issuer import LocalIssuer
from gateway.auth.keys import IssuerKeys
from gateway.demo import documents
from gateway.store import db
from tests.integration.conftest import Caller, World


def audit_size(world: World) -> int:
    gw = world.app.state.gateway
    with db.reading(gw.db) as conn:
        return int(gw.audit.log.size(conn))


def count(world: World, table: str) -> int:
    gw = world.app.state.gateway
    with db.reading(gw.db) as conn:
        return int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:insitu:problem:")
    assert "Traceback" not in response.text
    return body


@pytest.mark.parametrize(
    ("parameters", "fragment"),
    [
        ({"year": "2024", "industry": "manufacturing"}, "year"),
        ({"year": 2031, "industry": "manufacturing"}, "year"),
        ({"year": True, "industry": "manufacturing"}, "year"),
        ({"year": 2024, "industry": "x' OR '1'='1"}, "industry"),
        ({"year": 2024}, "industry"),
        ({"year": 2024, "industry": "retail", "extra": 1}, "extra"),
    ],
)
def test_bad_parameters_get_422_without_echoing_values(
    world: World,
    analyst: Caller,
    approved_template: dict[str, Any],
    parameters: dict[str, Any],
    fragment: str,
) -> None:
    jobs_before = count(world, "jobs")
    response = analyst.submit(
        {
            "template": "enterprises-without-tax-filing",
            "parameters": parameters,
            "purpose": "p",
        },
    )
    body = assert_problem(response, 422)
    assert fragment in body["detail"]
    assert "OR '1'" not in response.text
    assert count(world, "jobs") == jobs_before


def test_unknown_template_is_denied_and_audited(world: World, analyst: Caller) -> None:
    before = audit_size(world)
    body = assert_problem(analyst.post("/v1/jobs", json={"template": "nope"}), 403)
    assert "does not exist" in body["detail"]
    assert audit_size(world) == before + 1


def test_unknown_fields_in_job_request_are_refused(analyst: Caller) -> None:
    body = assert_problem(analyst.post("/v1/jobs", json={"template": "x", "sql": "DROP"}), 422)
    assert any(e["field"].endswith("sql") for e in body["errors"])


def test_malformed_yaml_dataset_is_refused_and_nothing_written(
    world: World, owners: dict[str, Caller]
) -> None:
    before = audit_size(world)
    body = assert_problem(owners["market"].post_yaml("/v1/datasets", "id: [unclosed\n"), 422)
    assert "YAML" in body["detail"]
    assert count(world, "datasets") == 0
    assert audit_size(world) == before


def test_misspelt_dataset_field_is_refused(owners: dict[str, Caller]) -> None:
    doc = documents.ENTERPRISE_REGISTRY.replace("share_class:", "share_klass:")
    body = assert_problem(owners["market"].post_yaml("/v1/datasets", doc), 422)
    fields = {e["field"] for e in body["errors"]}
    assert "share_klass" in fields and "share_class" in fields


def test_dataset_source_outside_the_data_directory_is_refused(
    world: World, owners: dict[str, Caller]
) -> None:
    doc = documents.ENTERPRISE_REGISTRY.replace(
        "data/market/enterprise_registry.parquet", "/etc/passwd"
    )
    body = assert_problem(owners["market"].post_yaml("/v1/datasets", doc), 422)
    assert "/etc/passwd" not in body["detail"]
    assert count(world, "datasets") == 0


def test_dataset_of_another_department_is_refused(owners: dict[str, Caller]) -> None:
    assert_problem(owners["tax"].post_yaml("/v1/datasets", documents.ENTERPRISE_REGISTRY), 403)


def test_declared_schema_must_match_the_source(owners: dict[str, Caller]) -> None:
    doc = documents.ENTERPRISE_REGISTRY.replace(
        "{name: status, type: VARCHAR", "{name: statuz, type: VARCHAR"
    )
    assert_problem(owners["market"].post_yaml("/v1/datasets", doc), 422)


def test_template_with_a_write_statement_is_rejected(registered: None, analyst: Caller) -> None:
    doc = documents.RESIDENTS_TEMPLATE.replace(
        "SELECT p.district", "WITH d AS (DELETE FROM civil.residents RETURNING *) SELECT p.district"
    )
    assert_problem(analyst.post_yaml("/v1/templates", doc), 422)


@pytest.mark.parametrize("header", [None, "Bearer", "Basic abc", "Bearer not-a-jwt"])
def test_missing_or_malformed_token_gets_401(world: World, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = world.client.get("/v1/datasets", headers=headers)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_expired_token_signed_by_the_real_key_gets_401(world: World) -> None:
    keys = IssuerKeys.load(world.settings.keys_dir / home.ISSUER_KEYS)
    key = keys.signing_key()
    now = int(time.time())
    claims = {
        "iss": world.settings.local_issuer,
        "aud": world.settings.oidc_audience,
        "sub": "a@stats",
        "department": "stats",
        "roles": ["analyst"],
        "iat": now - 600,
        "nbf": now - 600,
        "exp": now - world.settings.token_leeway_s - 60,
    }
    header = {"alg": "Ed25519", "kid": key.kid, "typ": "at+jwt"}
    token = jwt.encode(header, claims, key, algorithms=["Ed25519"])
    response = world.client.get("/v1/datasets", headers={"Authorization": f"Bearer {token}"})
    assert_problem(response, 401)
    # the same token with a live expiry passes: the refusal is the expiry, nothing else
    claims["exp"] = now + 600
    fresh = jwt.encode(header, claims, key, algorithms=["Ed25519"])
    ok = world.client.get("/v1/datasets", headers={"Authorization": f"Bearer {fresh}"})
    assert ok.status_code == 200, ok.text


def test_token_signed_by_another_key_gets_401(world: World, tmp_path: Any) -> None:
    rogue_keys = IssuerKeys.generate(tmp_path / "rogue.json")
    rogue = LocalIssuer(
        rogue_keys, issuer=world.settings.local_issuer, audience=world.settings.oidc_audience
    )
    token = rogue.issue(subject="evil", department="stats", roles=["analyst"])
    response = world.client.get("/v1/datasets", headers={"Authorization": f"Bearer {token}"})
    assert_problem(response, 401)


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/v1/jobs", {"json": {"template": "t", "version": 2**70}}),
        ("GET", f"/v1/templates/t/versions/{2**80}", {}),
        ("POST", f"/v1/templates/t/versions/{2**80}/approvals", {"json": {}}),
        ("GET", "/v1/audit/proofs/inclusion", {"params": {"index": 2**60}}),
        ("GET", "/v1/audit/proofs/consistency", {"params": {"first": 1, "second": 2**64}}),
        ("GET", "/v1/audit/entries", {"params": {"start": 2**63}}),
        ("GET", "/v1/policies", {"params": {"version": 2**40}}),
    ],
)
def test_integers_out_of_range_get_422_not_500(
    world: World, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    """Issue 14: every integer in a path, query or body is bounded by its route model."""
    caller = world.as_("aud@audit", "audit", "auditor", "analyst", "data_owner")
    assert_problem(caller.request(method, path, **kwargs), 422)
