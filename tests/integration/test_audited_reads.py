"""Allowed reads leave an audit entry too (who looked at which catalogue entry, template, job,
budget or purpose), written durably before the answer is returned."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import Caller, World
from tests.integration.test_job_path import run_job


def read_entries(world: World, subject: str) -> list[dict[str, Any]]:
    auditor = world.as_("auditor@audit", "audit", "auditor")
    r = auditor.get("/v1/audit/entries", params={"subject": subject, "limit": 1000})
    assert r.status_code == 200, r.text
    return [item["event"] for item in r.json()["items"] if item["event"]["type"].endswith(".read")]


@pytest.mark.slow
def test_each_allowed_read_is_in_the_audit_log(
    world: World, analyst: Caller, approved_template: dict[str, Any]
) -> None:
    body = run_job(analyst)
    job_id = body["job"]["id"]
    subject = read_entries(world, "nobody")  # warm-up: the auditor's own read
    assert subject == []
    reads = [
        ("/v1/datasets", "catalogue.read", "catalogue"),
        (
            "/v1/datasets/market.enterprise_registry",
            "catalogue.read",
            "dataset:market.enterprise_registry",
        ),
        (
            "/v1/datasets/market.enterprise_registry/dcat",
            "catalogue.read",
            "dataset:market.enterprise_registry",
        ),
        ("/v1/templates", "template.read", "templates"),
        (
            "/v1/templates/enterprises-without-tax-filing/versions/1",
            "template.read",
            "template:enterprises-without-tax-filing@1",
        ),
        (f"/v1/jobs/{job_id}", "job.read", f"job:{job_id}"),
        ("/v1/budgets", "budget.read", "budgets"),
        ("/v1/purposes", "purpose.read", "purposes"),
    ]
    me = analyst_subject(world, analyst)
    for path, event_type, target in reads:
        before = len(read_entries(world, me))
        r = analyst.get(path)
        assert r.status_code == 200, (path, r.text)
        after = read_entries(world, me)
        assert len(after) == before + 1, path
        entry = after[-1]
        assert (entry["type"], entry["target"], entry["allowed"]) == (event_type, target, True)


def analyst_subject(world: World, analyst: Caller) -> str:
    auditor = world.as_("auditor@audit", "audit", "auditor")
    r = auditor.get("/v1/audit/entries", params={"type": "job.accepted", "limit": 1})
    subject: str = r.json()["items"][0]["event"]["actor"]["subject"]
    return subject
