"""`dp` templates through the real app: OpenDP noise, the ledger, 429, Idempotency-Key."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from gateway.demo import documents
from gateway.store import schema
from tests.integration.conftest import Caller, World

PRIVACY = """\
privacy:
  budget: {rho_per_department: 0.3, rho_total: 0.5, delta_per_department: 0.000001,
           delta_total: 0.00001, refresh: monthly}
"""

DP_TEMPLATE = """\
id: residents-dp
version: 1
kind: dp
title: Residents and mean income by district (DP)
datasets: [civil.residents]
parameters:
  born_since: {type: integer, min: 1930, max: 2024}
dp:
  bounds: {rows_per_unit: 1}
  filters: [{column: birth_year, op: ">=", parameter: born_since}]
  group_by: {columns: [district], keys: public}
  measures:
    - {name: residents, kind: count}
    - {name: income, kind: mean, column: monthly_income, lower: 0, upper: 50000}
  cost: {rho: 0.1}
"""

SUBMIT = {"template": "residents-dp", "parameters": {"born_since": 1950}, "purpose": "planning"}


@pytest.fixture
def dp_template(world: World, owners: dict[str, Caller], analyst: Caller) -> dict[str, Any]:
    for dept, doc in (("civil", documents.RESIDENTS + PRIVACY),):
        r = owners[dept].post_yaml("/v1/datasets", doc)
        assert r.status_code == 201, r.text
    proposed = analyst.post_yaml("/v1/templates", DP_TEMPLATE)
    assert proposed.status_code == 201, proposed.text
    body = proposed.json()
    r = owners["civil"].post(
        "/v1/templates/residents-dp/versions/1/approvals",
        json={"content_hash": body["content_hash"]},
    )
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "approved"
    out: dict[str, Any] = r.json()
    return out


def run(analyst: Caller, headers: dict[str, str] | None = None) -> dict[str, Any]:
    submitted = analyst.post("/v1/jobs", json=SUBMIT, headers=headers or {})
    assert submitted.status_code == 202, submitted.text
    result = analyst.get(f"/v1/jobs/{submitted.json()['id']}/result", params={"wait": 60})
    assert result.status_code == 200, result.text
    out: dict[str, Any] = result.json()
    return out


@pytest.mark.slow
def test_dp_job_releases_noisy_counts_with_accuracy_and_charges_the_ledger(
    world: World, analyst: Caller, dp_template: dict[str, Any]
) -> None:
    body = run(analyst)
    assert body["status"] == "released", body
    assert body["columns"] == ["district", "residents", "income"]
    assert {row[0] for row in body["rows"]}, "every public district is a cell"
    assert body["accuracy"]["residents"]["ci95_half_width"] > 0
    assert len(body["intervals"]["residents"]) == len(body["rows"])
    assert body["privacy"]["rho"] == "0.1"
    budgets = analyst.get("/v1/budgets").json()["budgets"]
    mine = [b for b in budgets if b["department"] == "stats"]
    assert mine and mine[0]["rho"]["spent"] == "0.1"
    assert mine[0]["rho"]["remaining"] == "0.2"
    assert {b["department"] for b in budgets} == {"stats"}  # an analyst sees its own only


@pytest.mark.slow
def test_the_data_owner_sees_every_department_and_the_global_cap(
    world: World, owners: dict[str, Caller], analyst: Caller, dp_template: dict[str, Any]
) -> None:
    assert run(analyst)["status"] == "released"
    rows = owners["civil"].get("/v1/budgets").json()["budgets"]
    by_dept = {b["department"]: b for b in rows if b["dataset"] == "civil.residents"}
    assert by_dept["stats"]["rho"]["spent"] == "0.1"
    assert by_dept["*"]["rho"]["cap"] == "0.5" and by_dept["*"]["rho"]["spent"] == "0.1"
    others = owners["market"].get("/v1/budgets").json()["budgets"]
    assert {b["department"] for b in others} == {"market"}  # its own budget there, no other


@pytest.mark.slow
def test_budget_exhausted_answers_429_with_the_remaining_budget_and_runs_nothing(
    world: World, analyst: Caller, dp_template: dict[str, Any]
) -> None:
    for _ in range(3):
        assert run(analyst)["status"] == "released"
    refused = analyst.post("/v1/jobs", json=SUBMIT)
    assert refused.status_code == 429, refused.text
    problem = refused.json()
    assert problem["budget"]["rho"]["remaining"] == "0"
    engine = sa.create_engine(world.settings.resolved_database_url)
    with engine.connect() as conn:
        jobs = conn.execute(sa.select(sa.func.count()).select_from(schema.jobs)).scalar()
        reservations = conn.execute(sa.select(schema.budget_reservations)).all()
    engine.dispose()
    assert jobs == 3
    assert [r.status for r in reservations] == ["committed"] * 3


@pytest.mark.slow
def test_same_idempotency_key_returns_the_stored_noisy_answer_and_charges_once(
    world: World, analyst: Caller, dp_template: dict[str, Any]
) -> None:
    key = {"Idempotency-Key": "retry-1"}
    first = analyst.post("/v1/jobs", json=SUBMIT, headers=key)
    assert first.status_code == 202
    body = analyst.get(f"/v1/jobs/{first.json()['id']}/result", params={"wait": 60}).json()
    again = analyst.post("/v1/jobs", json=SUBMIT, headers=key)
    assert again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    body2 = analyst.get(f"/v1/jobs/{again.json()['id']}/result", params={"wait": 60}).json()
    assert body2["rows"] == body["rows"]
    other = analyst.post("/v1/jobs", json={**SUBMIT, "purpose": "other"}, headers=key)
    assert other.status_code == 409
    mine = [b for b in analyst.get("/v1/budgets").json()["budgets"] if b["department"] == "stats"]
    assert mine[0]["rho"]["spent"] == "0.1"


def test_dp_template_on_a_dataset_without_budget_is_rejected(
    world: World, owners: dict[str, Caller], analyst: Caller
) -> None:
    r = owners["civil"].post_yaml("/v1/datasets", documents.RESIDENTS)
    assert r.status_code == 201
    proposed = analyst.post_yaml("/v1/templates", DP_TEMPLATE)
    assert proposed.status_code == 422
    assert "privacy budget" in proposed.text


PRIVATE_KEYS_TEMPLATE = """\
id: residents-dp-private
version: 1
kind: dp
title: Residents by district, keys selected privately
datasets: [civil.residents]
dp:
  bounds: {rows_per_unit: 1}
  filters: [{column: household_size, op: ">=", value: 6}]
  group_by: {columns: [district], keys: private, delta: 0.0000001}
  measures: [{name: residents, kind: count}]
  cost: {rho: 0.2}
"""


def test_private_key_selection_withholds_small_groups_and_books_delta(
    world: World, owners: dict[str, Caller], analyst: Caller, dp_template: dict[str, Any]
) -> None:
    proposed = analyst.post_yaml("/v1/templates", PRIVATE_KEYS_TEMPLATE)
    assert proposed.status_code == 201, proposed.text
    r = owners["civil"].post(
        "/v1/templates/residents-dp-private/versions/1/approvals",
        json={"content_hash": proposed.json()["content_hash"]},
    )
    assert r.status_code == 201, r.text
    submitted = analyst.post("/v1/jobs", json={"template": "residents-dp-private"})
    assert submitted.status_code == 202, submitted.text
    body = analyst.get(f"/v1/jobs/{submitted.json()['id']}/result", params={"wait": 60}).json()
    assert body["status"] == "released", body
    released = {row[0] for row in body["rows"]}
    withheld = {cell["key"]["district"] for cell in body["withheld"]}
    assert released and withheld and not released & withheld
    assert all(cell["rule"] == "key_selection" for cell in body["withheld"])
    threshold = body["privacy"]["key_selection"]["threshold"]
    assert all(row[1] >= threshold for row in body["rows"])
    assert 0 < float(body["privacy"]["delta"]) <= 1e-7
    mine = [b for b in analyst.get("/v1/budgets").json()["budgets"] if b["department"] == "stats"]
    assert mine[0]["rho"]["spent"] == "0.2"
    assert mine[0]["delta"]["spent"] != "0"


def _residents_with(district_line: str) -> str:
    doc = documents.RESIDENTS
    start = doc.index("  - name: district\n")
    end = doc.index("  - {name: birth_year")
    return doc[:start] + district_line + doc[end:] + PRIVACY


@pytest.mark.slow
def test_public_keys_need_declared_values_not_values_read_from_the_data(
    world: World, owners: dict[str, Caller], analyst: Caller
) -> None:
    undeclared = _residents_with("  - {name: district, type: VARCHAR, sensitivity: public}\n")
    assert owners["civil"].post_yaml("/v1/datasets", undeclared).status_code == 201
    proposed = analyst.post_yaml("/v1/templates", DP_TEMPLATE)
    assert proposed.status_code == 422, proposed.text
    assert "declared" in proposed.json()["detail"]


@pytest.mark.slow
def test_released_cells_are_exactly_the_declared_keys(
    world: World, owners: dict[str, Caller], analyst: Caller
) -> None:
    # "atlantis" has no resident; "haidian" has many but is not declared.
    declared = (
        "  - {name: district, type: VARCHAR, sensitivity: public, values: [chaoyang, atlantis]}\n"
    )
    assert owners["civil"].post_yaml("/v1/datasets", _residents_with(declared)).status_code == 201
    proposed = analyst.post_yaml("/v1/templates", DP_TEMPLATE)
    assert proposed.status_code == 201, proposed.text
    approved = owners["civil"].post(
        "/v1/templates/residents-dp/versions/1/approvals",
        json={"content_hash": proposed.json()["content_hash"]},
    )
    assert approved.status_code == 201, approved.text
    body = run(analyst)
    assert body["status"] == "released", body
    assert sorted(row[0] for row in body["rows"]) == ["atlantis", "chaoyang"]
