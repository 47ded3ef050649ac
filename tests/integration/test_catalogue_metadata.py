"""The catalogue as the government information-resource catalogue and DCAT describe it."""

from __future__ import annotations

from gateway.demo import documents
from tests.integration.conftest import Caller


def test_catalogue_entry_carries_the_resource_catalogue_fields(
    owners: dict[str, Caller], analyst: Caller
) -> None:
    assert owners["market"].post_yaml("/v1/datasets", documents.LICENCES).status_code == 201
    body = analyst.get("/v1/datasets/market.licences").json()
    entry = body["catalogue"]
    assert entry["resource_code"] == "11000000-MKT-0002"
    assert entry["name"] == "Business licences" and entry["provider"] == "market"
    assert entry["share_class"] == "unconditional" and entry["share_class_label"] == "无条件共享"
    assert entry["open_class"] == "open" and entry["classification_label"] == "一般"
    assert entry["update_cycle"] == "daily" and entry["format"] == "parquet"
    assert {i["name"]: i["personal"] for i in entry["items"]}["enterprise_id"] is False
    assert "path" not in body["source"]  # the source location never shows


def test_dcat_view_is_json_ld_without_the_source_location(
    owners: dict[str, Caller], analyst: Caller
) -> None:
    assert owners["market"].post_yaml("/v1/datasets", documents.LICENCES).status_code == 201
    response = analyst.get("/v1/datasets/market.licences/dcat")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/ld+json")
    body = response.json()
    assert body["@type"] == "dcat:Dataset" and "dcat" in body["@context"]
    assert body["dct:title"] == "Business licences"
    assert body["dct:accessRights"] == "unconditional"
    columns = body["csvw:tableSchema"]["csvw:column"]
    assert [c["csvw:name"] for c in columns][:2] == ["enterprise_id", "district"]
    assert "licences.parquet" not in response.text


def test_columns_are_personal_unless_the_owner_says_otherwise(
    owners: dict[str, Caller], analyst: Caller
) -> None:
    assert owners["civil"].post_yaml("/v1/datasets", documents.RESIDENTS).status_code == 201
    items = analyst.get("/v1/datasets/civil.residents").json()["catalogue"]["items"]
    assert all(i["personal"] for i in items)


def test_a_not_shared_dataset_cannot_be_declared_open(owners: dict[str, Caller]) -> None:
    doc = documents.RESIDENTS.replace("share_class: none", "share_class: none\nopen_class: open")
    refused = owners["civil"].post_yaml("/v1/datasets", doc)
    assert refused.status_code == 422


def test_declared_schema_is_checked_against_the_inferred_one(owners: dict[str, Caller]) -> None:
    doc = documents.LICENCES.replace(
        "{name: valid_until, type: INTEGER", "{name: valid_until, type: VARCHAR"
    )
    refused = owners["market"].post_yaml("/v1/datasets", doc)
    assert refused.status_code == 422
    assert "valid_until" in refused.json()["detail"]
