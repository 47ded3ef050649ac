"""Comparisons routed to the responsible department (issue 18c), over HTTP on SQLite and
PostgreSQL: findings keyed by a non-personal code go only to the department that corrects
them; the requester sees counts; acknowledgements and closures are audited."""

from __future__ import annotations

from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from gateway.demo import documents
from tests.integration.conftest import Caller, World

pytestmark = pytest.mark.slow
YEAR = 2023


def expected_keys(world: World) -> set[str]:
    """The comparison computed independently with pyarrow from the same files."""
    data = world.settings.data_dir
    licences = pq.read_table(data / "market" / "licences.parquet")
    abnormal = pq.read_table(data / "tax" / "abnormal_taxpayers.parquet")
    listed = set(abnormal.filter(pc.equal(abnormal["year"], YEAR))["enterprise_id"].to_pylist())
    valid = licences.filter(pc.equal(licences["licence_status"], "valid"))
    return {k for k in valid["enterprise_id"].to_pylist() if k in listed}


@pytest.fixture
def comparison(world: World, owners: dict[str, Caller], analyst: Caller) -> dict[str, Any]:
    for dept, doc in (("market", documents.LICENCES), ("tax", documents.ABNORMAL_TAXPAYERS)):
        assert owners[dept].post_yaml("/v1/datasets", doc).status_code == 201
    proposed = analyst.post_yaml("/v1/templates", documents.COMPARE_TEMPLATE)
    assert proposed.status_code == 201, proposed.text
    for dept in ("market", "tax"):
        r = owners[dept].post(
            "/v1/templates/licensed-but-not-filing/versions/1/approvals",
            json={"content_hash": proposed.json()["content_hash"]},
        )
        assert r.status_code == 201, r.text
    job = analyst.submit({"template": "licensed-but-not-filing", "parameters": {"year": YEAR}})
    assert job.status_code == 202, job.text
    result: dict[str, Any] = analyst.get(
        f"/v1/jobs/{job.json()['id']}/result", params={"wait": 30}
    ).json()
    assert result["status"] == "released", result
    return result


def test_findings_go_only_to_the_responsible_department(
    world: World, comparison: dict[str, Any], owners: dict[str, Caller], analyst: Caller
) -> None:
    keys = expected_keys(world)
    assert keys  # the synthetic data has some
    # the requester (stats) sees counts by type and district, never the keys
    assert "keys" not in comparison
    assert comparison["columns"] == ["finding", "district", "state", "findings"]
    assert sum(r[3] for r in comparison["rows"]) == len(keys)
    assert comparison["comparison"]["routed_to"] == "market"
    assert not any(k in str(comparison) for k in keys)
    assert analyst.get("/v1/findings").json()["items"] == []
    summary = analyst.get("/v1/findings/summary").json()["items"]
    assert sum(s["findings"] for s in summary) == len(keys)
    assert {s["routed_to"] for s in summary} == {"market"}
    # the market regulator's inbox holds exactly the keys; tax's holds none
    page = owners["market"].get("/v1/findings", params={"limit": 1000}).json()
    inbox = page["items"]
    assert page["total"] == len(keys)
    assert {f["key"] for f in inbox} == keys
    assert {f["type"] for f in inbox} == {"registered_no_tax_filing"}
    assert owners["tax"].get("/v1/findings").json()["items"] == []


def test_acknowledge_and_close_with_a_note_all_audited(
    world: World, comparison: dict[str, Any], owners: dict[str, Caller], analyst: Caller
) -> None:
    inbox = owners["market"].get("/v1/findings").json()["items"]
    first = inbox[0]["id"]
    # another department cannot touch it (it looks missing); analysts cannot close
    assert (
        owners["tax"].post(f"/v1/findings/{first}/closures", json={"note": "x"}).status_code == 404
    )
    assert analyst.post(f"/v1/findings/{first}/closures", json={"note": "x"}).status_code == 403
    acked = owners["market"].post(f"/v1/findings/{first}/acknowledgements", json={"note": "seen"})
    assert acked.status_code == 201 and acked.json()["state"] == "acknowledged"
    closed = owners["market"].post(
        f"/v1/findings/{first}/closures", json={"note": "licence suspended"}
    )
    assert closed.status_code == 201 and closed.json()["state"] == "closed"
    again = owners["market"].post(f"/v1/findings/{first}/closures", json={"note": "again"})
    assert again.status_code == 409
    states = {
        s["state"]: s["findings"]
        for s in analyst.get("/v1/findings/summary").json()["items"]
        if s["state"] == "closed"
    }
    assert states == {"closed": 1}
    auditor = world.as_("auditor@audit", "audit", "auditor")
    stats = {s["department"]: s for s in auditor.get("/v1/findings/stats").json()["items"]}
    assert stats["market"]["closed"] == 1 and stats["market"]["open"] == len(inbox) - 1
    assert stats["market"]["oldest_open_days"] is not None
    types = [
        e["event"]["type"]
        for e in auditor.get("/v1/audit/entries", params={"limit": 1000}).json()["items"]
    ]
    for event in ("finding.delivered", "finding.acknowledged", "finding.closed", "finding.read"):
        assert event in types
    delivered = [
        e["event"]
        for e in auditor.get("/v1/audit/entries", params={"type": "finding.delivered"}).json()[
            "items"
        ]
    ]
    assert delivered[0]["details"]["findings"] == {"registered_no_tax_filing": len(inbox)}
    assert inbox[0]["key"] not in str(delivered)  # the log holds a fingerprint of the keys


def test_requester_whose_data_holds_the_keys_sees_them(
    world: World, comparison: dict[str, Any]
) -> None:
    market_analyst = world.as_("analyst@market", "market", "analyst")
    job = market_analyst.submit(
        {"template": "licensed-but-not-filing", "parameters": {"year": YEAR}}
    )
    result = market_analyst.get(f"/v1/jobs/{job.json()['id']}/result", params={"wait": 30}).json()
    assert set(result["keys"]) == expected_keys(world)


def test_a_comparison_cannot_carry_personal_data_or_route_outside_its_datasets(
    world: World, owners: dict[str, Caller], analyst: Caller
) -> None:
    for dept, doc in (
        ("market", documents.LICENCES),
        ("tax", documents.ABNORMAL_TAXPAYERS),
        ("civil", documents.RESIDENTS),
    ):
        assert owners[dept].post_yaml("/v1/datasets", doc).status_code == 201
    personal = documents.COMPARE_TEMPLATE.replace("id: licensed-but-not-filing", "id: persons")
    personal = personal.replace(
        "SELECT l.enterprise_id, l.district\n  FROM market.licences AS l",
        "SELECT p.person_id AS enterprise_id, p.district\n"
        "  FROM civil.residents AS p, market.licences AS l",
    ).replace(
        "datasets: [market.licences, tax.abnormal_taxpayers]",
        "datasets: [market.licences, tax.abnormal_taxpayers, civil.residents]",
    )
    refused = analyst.post_yaml("/v1/templates", personal)
    assert refused.status_code == 422, refused.text
    elsewhere = documents.COMPARE_TEMPLATE.replace(
        "id: licensed-but-not-filing", "id: elsewhere"
    ).replace("route_to: market.licences", "route_to: civil.residents")
    refused = analyst.post_yaml("/v1/templates", elsewhere)
    assert refused.status_code == 422 and "route_to" in refused.json()["detail"]


REGISTRATIONS = """\
id: tax.registrations
title: Tax registrations
provider: tax
source: {format: parquet, path: data/tax/registrations.parquet}
share_class: unconditional
classification: general
columns:
  - {name: enterprise_id, type: VARCHAR, sensitivity: identifier, personal: false}
  - {name: district, type: VARCHAR, sensitivity: public, personal: false}
"""
DISAGREE = """\
id: district-disagrees
version: 1
kind: list
title: Enterprises whose tax registration names another district than their licence
datasets: [market.licences, tax.registrations]
sql: |
  SELECT t.enterprise_id
  FROM tax.registrations AS t
  WHERE EXISTS (SELECT 1 FROM market.licences AS l
                WHERE l.enterprise_id = t.enterprise_id AND l.district <> t.district)
findings:
  type: fields_disagree
  key: enterprise_id
  route_to: tax.registrations
  fields: [district]
"""


def test_fields_disagree_names_the_fields_never_their_values(
    world: World, owners: dict[str, Caller], analyst: Caller
) -> None:
    import pyarrow as pa

    data = world.settings.data_dir
    licences = pq.read_table(data / "market" / "licences.parquet").slice(0, 40)
    districts = licences["district"].to_pylist()
    moved = {i for i in range(0, 40, 4)}  # every fourth registration names another district
    tax_districts = [("elsewhere" if i in moved else d) for i, d in enumerate(districts)]
    pq.write_table(
        pa.table({"enterprise_id": licences["enterprise_id"], "district": tax_districts}),
        data / "tax" / "registrations.parquet",
    )
    assert owners["market"].post_yaml("/v1/datasets", documents.LICENCES).status_code == 201
    assert owners["tax"].post_yaml("/v1/datasets", REGISTRATIONS).status_code == 201
    # the district travelling with a finding may not be a compared field
    leaky = DISAGREE.replace("SELECT t.enterprise_id", "SELECT t.enterprise_id, t.district")
    leaky = leaky.replace("id: district-disagrees", "id: leaky").replace(
        "  route_to:", "  district: district\n  route_to:"
    )
    refused = analyst.post_yaml("/v1/templates", leaky)
    assert refused.status_code == 422 and "district" in refused.json()["detail"]
    proposed = analyst.post_yaml("/v1/templates", DISAGREE)
    assert proposed.status_code == 201, proposed.text
    for dept in ("market", "tax"):
        owners[dept].post(
            "/v1/templates/district-disagrees/versions/1/approvals",
            json={"content_hash": proposed.json()["content_hash"]},
        )
    job = analyst.submit({"template": "district-disagrees", "parameters": {}})
    result = analyst.get(f"/v1/jobs/{job.json()['id']}/result", params={"wait": 30}).json()
    assert result["status"] == "released", result
    inbox = owners["tax"].get("/v1/findings").json()["items"]
    expected = {licences["enterprise_id"][i].as_py() for i in moved}
    assert {f["key"] for f in inbox} == expected
    assert all(f["fields"] == ["district"] and f["district"] is None for f in inbox)
    text = str(inbox) + str(result)
    assert "elsewhere" not in text and not any(d in text for d in set(districts))
