"""Data quality at the source (issue 18a), over HTTP on SQLite and PostgreSQL: a profile
computed in the sandbox at registration and on every snapshot, `must` rules refusing a
registration or snapshot (naming rule and column), `should` rules alerting the owner, the
catalogue's summary, and a job's release naming the profile its data had."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.integration.conftest import YAML, Caller, World

pytestmark = pytest.mark.slow

SECRET = "SECRET-REVENUE-98765"
DOC = """\
id: market.licences
title: Business licences
provider: market
source: {format: parquet, path: data/market/licences_q.parquet}
share_class: unconditional
open_class: open
classification: general
update_cycle: daily
columns:
  - {name: enterprise_id, type: VARCHAR, sensitivity: identifier, personal: false}
  - {name: district, type: VARCHAR, sensitivity: public, personal: false}
  - {name: licence_status, type: VARCHAR, sensitivity: public, personal: false}
  - {name: fee, type: VARCHAR, sensitivity: sensitive, personal: false}
quality:
  rules:
    - {rule: required, columns: [enterprise_id], severity: must}
    - {rule: key_unique, columns: [enterprise_id], severity: must}
    - {rule: allowed_values, column: licence_status, values: [valid, expired], severity: should}
    - {rule: max_null_rate, column: district, max: 0.2, severity: should}
    - {rule: max_staleness, hours: 48, severity: should}
"""


def write(
    path: Path, ids: list[str | None], statuses: list[str], districts: list[str | None]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table(
            {
                "enterprise_id": ids,
                "district": districts,
                "licence_status": statuses,
                "fee": [SECRET] * len(ids),
            }
        ),
        path,
    )


def good(world: World, name: str = "licences_q.parquet", n: int = 50) -> None:
    write(
        world.settings.data_dir / "market" / name,
        [f"91110000{i:010d}" for i in range(n)],
        ["valid"] * (n - 1) + ["revoked"],
        ["a"] * n,
    )


LIST = """\
id: licences-in-district
version: 1
kind: list
title: Licensed enterprises in a district
datasets: [market.licences]
parameters:
  district: {type: string, values_from: market.licences.district}
sql: |
  SELECT l.enterprise_id FROM market.licences AS l WHERE l.district = :district
"""


def approve_list_template(owners: dict[str, Caller], analyst: Caller) -> None:
    """A list of the licences in a district (one dataset): approved by market's owner."""
    proposed = analyst.post_yaml("/v1/templates", LIST).json()
    r = owners["market"].post(
        "/v1/templates/licences-in-district/versions/1/approvals",
        json={"content_hash": proposed["content_hash"]},
    )
    assert r.status_code == 201, r.text


def run_list_job(analyst: Caller) -> dict[str, Any]:
    job = analyst.submit({"template": "licences-in-district", "parameters": {"district": "a"}})
    assert job.status_code == 202, job.text
    result: dict[str, Any] = analyst.get(
        f"/v1/jobs/{job.json()['id']}/result", params={"wait": 30}
    ).json()
    return result


def test_registration_profile_and_catalogue_summary(
    world: World, owners: dict[str, Caller]
) -> None:
    good(world)
    registered = owners["market"].post_yaml("/v1/datasets", DOC)
    assert registered.status_code == 201, registered.text
    profile = owners["market"].get("/v1/datasets/market.licences/profile").json()
    current = profile["current"]
    assert current["status"] == "accepted" and current["trigger"] == "registration"
    assert current["profile"]["rows"] == 50
    cols = {c["name"]: c for c in current["profile"]["columns"]}
    assert cols["licence_status"]["outside_domain"] == 1
    assert cols["fee"]["min"] is None and cols["enterprise_id"]["min"] is None
    assert cols["district"]["min"] == "a"  # public: its range is shown
    assert SECRET not in json.dumps(profile)
    failing = {c["rule"] for c in current["checks"] if not c["ok"]}
    assert failing == {"allowed_values"}
    assert current["freshness"]["state"] == "fresh"
    shown = owners["market"].get("/v1/datasets/market.licences").json()["quality"]
    assert shown["failing_should"] == ["allowed_values(licence_status)"]
    listed = owners["market"].get("/v1/datasets").json()["items"]
    assert listed[0]["quality"]["profile"] == current["id"]
    alerts = owners["market"].get("/v1/quality/alerts").json()["items"]
    assert [a["dataset"] for a in alerts] == ["market.licences"]
    assert owners["tax"].get("/v1/quality/alerts").json()["items"] == []


def test_must_rule_refuses_registration_naming_rule_and_column(
    world: World, owners: dict[str, Caller]
) -> None:
    write(
        world.settings.data_dir / "market" / "licences_q.parquet",
        ["A", "A", None],
        ["valid"] * 3,
        ["a"] * 3,
    )
    refused = owners["market"].post_yaml("/v1/datasets", DOC)
    assert refused.status_code == 422
    body = refused.json()
    assert {(e["rule"], e["column"]) for e in body["errors"]} == {
        ("required", "enterprise_id"),
        ("key_unique", "enterprise_id"),
    }
    assert "A" not in [e["observed"] for e in body["errors"]]
    assert owners["market"].get("/v1/datasets/market.licences").status_code == 404


def test_snapshot_refused_keeps_old_data_and_accepted_snapshot_drifts(
    world: World, owners: dict[str, Caller]
) -> None:
    good(world)
    assert owners["market"].post_yaml("/v1/datasets", DOC).status_code == 201
    bad = world.settings.data_dir / "market" / "licences_bad.parquet"
    write(bad, ["X1", "X1"], ["valid", "valid"], ["a", "a"])
    refused = owners["market"].post(
        "/v1/datasets/market.licences/snapshots", json={"path": "data/market/licences_bad.parquet"}
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["rule"] == "key_unique"
    assert "X1" not in refused.text
    # another department's owner may not change market's data
    assert (
        owners["tax"]
        .post("/v1/datasets/market.licences/snapshots", json={"path": "data/market/x.parquet"})
        .status_code
        == 403
    )
    good(world, "licences_v2.parquet", n=200)
    accepted = owners["market"].post(
        "/v1/datasets/market.licences/snapshots", json={"path": "data/market/licences_v2.parquet"}
    )
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["drift"]["rows_change"] == 3.0
    assert accepted.json()["drift"]["flagged"] is True
    history = owners["market"].get("/v1/datasets/market.licences/profile").json()["history"]
    assert [h["status"] for h in history] == ["accepted", "refused", "accepted"]
    auditor = world.as_("auditor@audit", "audit", "auditor")
    stats = auditor.get("/v1/audit/stats").json()
    assert stats["quality"]["market.licences"]["rows"] == 200
    types = [
        e["event"]["type"]
        for e in auditor.get("/v1/audit/entries", params={"dataset": "market.licences"}).json()[
            "items"
        ]
    ]
    assert "dataset.snapshot_refused" in types and "dataset.snapshot_accepted" in types


def test_job_release_names_the_profile_and_a_file_broken_in_place_stops_jobs(
    world: World, owners: dict[str, Caller], analyst: Caller
) -> None:
    good(world)
    assert owners["market"].post_yaml("/v1/datasets", DOC).status_code == 201
    approve_list_template(owners, analyst)
    job = analyst.submit({"template": "licences-in-district", "parameters": {"district": "a"}})
    assert job.status_code == 202, job.text
    result = analyst.get(f"/v1/jobs/{job.json()['id']}/result", params={"wait": 30}).json()
    assert result["status"] == "released"
    current = owners["market"].get("/v1/datasets/market.licences/profile").json()["current"]
    assert result["profiles"] == {"market.licences": current["id"]}
    auditor = world.as_("auditor@audit", "audit", "auditor")
    released = auditor.get("/v1/audit/entries", params={"type": "job.released"}).json()["items"]
    assert released[-1]["event"]["details"]["profiles"] == {"market.licences": current["id"]}
    # the owner overwrites the file in place with data breaking a must rule: jobs stop
    write(
        world.settings.data_dir / "market" / "licences_q.parquet",
        [None, "B"],
        ["valid", "valid"],
        ["a", "a"],
    )
    job = analyst.submit({"template": "licences-in-district", "parameters": {"district": "a"}})
    failed = analyst.get(f"/v1/jobs/{job.json()['id']}/result", params={"wait": 30}).json()
    assert failed["status"] == "failed"
    assert "required" in failed["job"]["error"] and "enterprise_id" in failed["job"]["error"]
    refused = owners["market"].get("/v1/datasets/market.licences/profile").json()["current"]
    assert refused["trigger"] == "job" and refused["status"] == "refused"


def test_a_profile_remembered_for_a_file_gives_way_to_a_refused_snapshot_of_that_file(
    world: World, owners: dict[str, Caller], analyst: Caller
) -> None:
    """The worker remembers the profile of a file's fingerprint (no lookup a job). The owner
    makes a rule `must` and snapshots the same, unchanged file: refused, its profile replaces
    the remembered one for that fingerprint, and the very next job on the file fails (the
    refusal changes no dataset document: only the stored profile's version tells)."""
    good(world)  # one status outside the allowed values: a `should` alert
    assert owners["market"].post_yaml("/v1/datasets", DOC).status_code == 201
    approve_list_template(owners, analyst)
    assert run_list_job(analyst)["status"] == "released"
    strict = DOC.replace(
        "values: [valid, expired], severity: should}", "values: [valid, expired], severity: must}"
    )
    owner = owners["market"]
    updated = owner.request(
        "PUT", "/v1/datasets/market.licences", content=strict.encode(), headers=YAML
    )
    assert updated.status_code == 200, updated.text
    before = owner.get("/v1/datasets/market.licences/profile").json()["current"]
    first = run_list_job(analyst)  # the stored profile (accepted under the old rules)
    assert first["status"] == "released", first
    assert first["profiles"] == {"market.licences": before["id"]}
    assert run_list_job(analyst)["profiles"] == first["profiles"]  # from memory now
    refused = owner.post("/v1/datasets/market.licences/snapshots", json={})
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["rule"] == "allowed_values"
    current = owner.get("/v1/datasets/market.licences/profile").json()["current"]
    assert current["status"] == "refused" and current["fingerprint"] == before["fingerprint"]
    failed = run_list_job(analyst)
    assert failed["status"] == "failed", failed
    assert "allowed_values" in failed["job"]["error"] and current["id"] in failed["job"]["error"]
