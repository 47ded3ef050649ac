"""Verification used as a locator (issue 15, attack 2), through the real app.

The demo's verify template answers "is person P a resident of district D?". With one key the
requester holds and one call per district, the one "yes" says where the person lives — a
handful of keys a day, far under the quota, and the sweep alarm (many keys, few matches)
never fires. Padding every call with keys known to match keeps the match rate high as well.
The owner's `max_parameter_sets_per_key` (default 3 per month) refuses the fourth district
for the same key, blocks the department for the day and alerts the owner (audited).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration import conftest as integration
from tests.integration import test_verify_jobs as verify_jobs
from tests.integration.conftest import Caller, World
from tests.integration.test_verify_jobs import answer, audit_items, residents, submit

world, analyst, owners, registered = (
    integration.world,
    integration.analyst,
    integration.owners,
    integration.registered,
)
demo_data_dir = integration.demo_data_dir
verify_template = verify_jobs.verify_template


def districts_of(world: World) -> dict[str, list[str]]:
    people: dict[str, list[str]] = {}
    for row in residents(world):
        people.setdefault(row["district"], []).append(row["person_id"])
    return people


def refused_as_spread(world: World, owners: dict[str, Caller], response: Any) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["reason_code"] == "verify_spread"
    alerts = owners["civil"].get("/v1/verify/alerts").json()["items"]
    assert [(a["kind"], a["department"], a["dataset"]) for a in alerts] == [
        ("spread", "stats", "civil.residents")
    ]
    events = [i["event"] for i in audit_items(world)]
    spread = [e for e in events if e["type"] == "verify.spread_detected"]
    assert len(spread) == 1 and spread[0]["details"]["reason_code"] == "verify_spread"
    denied = [e for e in events if e["type"] == "job.denied"]
    assert denied[-1]["details"]["reason_code"] == "verify_spread"


@pytest.mark.slow
def test_one_key_asked_district_after_district_is_refused_and_reported(
    world: World, owners: dict[str, Caller], analyst: Caller, verify_template: dict[str, Any]
) -> None:
    people = districts_of(world)
    target = people["chaoyang"][0]
    elsewhere = sorted(d for d in people if d != "chaoyang")
    for district in elsewhere[:3]:  # three districts: within the owner's default of 3
        body = answer(analyst, [target], district)
        assert body["status"] == "released" and body["rows"] == [[1, False]]
    refused_as_spread(world, owners, submit(analyst, [target], "chaoyang"))
    # the department is blocked for the day on this dataset, whatever it asks next
    blocked = submit(analyst, [people["chaoyang"][1]], "chaoyang")
    assert blocked.status_code == 403 and blocked.json()["reason_code"] == "verify_sweep"


@pytest.mark.slow
def test_padding_with_matching_keys_does_not_hide_the_locator(
    world: World, owners: dict[str, Caller], analyst: Caller, verify_template: dict[str, Any]
) -> None:
    people = districts_of(world)
    target = people["chaoyang"][0]
    elsewhere = sorted(d for d in people if d != "chaoyang")
    for district in elsewhere[:3]:
        padding = people[district][:9]  # nine keys known to match in that district
        body = answer(analyst, [target, *padding], district)
        assert body["status"] == "released"  # a 90 % match rate: no sweep
        assert body["verify"]["matches"] == 9
    refused_as_spread(
        world, owners, submit(analyst, [target, *people["chaoyang"][1:10]], "chaoyang")
    )
