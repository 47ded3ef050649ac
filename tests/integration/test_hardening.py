"""Attacks found in review, each refused through the real app (a test per defence)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.demo import documents
from tests.integration.conftest import Caller, World, grant_purpose
from tests.integration.test_job_path import run_job

RESIDENT_ROWS = """\
id: civil-rows
version: 1
kind: KIND
title: every resident
datasets: [civil.residents]
sql: |
  SELECT p.person_id, p.monthly_income, COUNT(*) AS n
  FROM civil.residents AS p GROUP BY p.person_id, p.monthly_income
output: {count_column: n}
"""


@pytest.mark.slow
def test_a_dp_template_written_as_sql_is_refused(registered: None, analyst: Caller) -> None:
    """A dp template is declarative (`dp:` section); SQL would release exact rows."""
    response = analyst.post_yaml("/v1/templates", RESIDENT_ROWS.replace("KIND", "dp"))
    assert response.status_code == 422
    assert "no `sql`" in response.text


def test_a_department_cannot_republish_another_departments_file(
    owners: dict[str, Caller],
) -> None:
    shadow = documents.RESIDENTS.replace("id: civil.residents", "id: market.shadow").replace(
        "provider: civil", "provider: market"
    )
    response = owners["market"].post_yaml("/v1/datasets", shadow)
    assert response.status_code == 422
    assert "department market" in response.json()["detail"]


@pytest.mark.slow
def test_one_file_is_one_dataset(registered: None, owners: dict[str, Caller]) -> None:
    twin = documents.ENTERPRISE_REGISTRY.replace(
        "id: market.enterprise_registry", "id: market.registry_copy"
    )
    response = owners["market"].post_yaml("/v1/datasets", twin)
    assert response.status_code == 409


@pytest.mark.slow
def test_author_cannot_approve_under_a_differently_cased_subject(
    world: World, registered: None
) -> None:
    author = world.as_("alice@market", "market", "analyst")
    proposed = author.post_yaml(
        "/v1/templates",
        documents.RESIDENTS_TEMPLATE.replace("civil.residents", "market.enterprise_registry")
        .replace("p.birth_year >= :born_since", "p.established_year >= :born_since")
        .replace("residents-by-district", "enterprises-since")
        .replace("1930", "1990"),
    )
    assert proposed.status_code == 201, proposed.text
    twin = world.as_("Alice@market", "market", "data_owner")
    refused = twin.post(
        "/v1/templates/enterprises-since/versions/1/approvals",
        json={"content_hash": proposed.json()["content_hash"]},
    )
    assert refused.status_code == 403
    assert "author" in refused.json()["detail"]


AVERAGE = """\
id: capital-by-district
version: 1
kind: aggregate
title: Average registered capital by district
datasets: [market.enterprise_registry]
parameters:
  since: {type: number, min: 1990, max: 2030}
sql: |
  SELECT r.district, COUNT(*) AS enterprises, AVG(r.registered_capital) AS avg_capital
  FROM market.enterprise_registry AS r
  WHERE r.established_year >= :since
  GROUP BY r.district
output: {count_column: enterprises}
"""


@pytest.mark.slow
def test_fractional_outputs_and_number_parameters_are_released(
    registered: None, owners: dict[str, Caller], analyst: Caller
) -> None:
    proposed = analyst.post_yaml("/v1/templates", AVERAGE)
    assert proposed.status_code == 201, proposed.text
    owners["market"].post(
        "/v1/templates/capital-by-district/versions/1/approvals",
        json={"content_hash": proposed.json()["content_hash"]},
    )
    grant_purpose(analyst, owners["market"], "market.enterprise_registry")
    body: dict[str, Any] = run_job(
        analyst,
        {
            "template": "capital-by-district",
            "parameters": {"since": 2000.5},
            "purpose": "p",
        },
    )
    assert body["status"] == "released", body["job"]["error"]
    assert all(isinstance(row[2], float) for row in body["rows"])
