"""Differencing across three releases (issue 15, attack 1), through the real app.

An ordinary aggregate template with a year range, counting enterprises and summing their
(sensitive) capital by district. Year 2020 holds exactly one enterprise, in district d0.
Releasing [2015, 2024], then [2015, 2020] and [2020, 2024] — each pair differs by many
enterprises, so a pairwise check lets all three pass — would give R[a,b] + R[b,c] − R[a,c]:
the one enterprise of 2020 and its exact capital. The atom check withholds the cell that would
complete the arithmetic; every derivable difference stays 0 or at least k.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from gateway.api import create_app
from gateway.context import Gateway
from gateway.jobs import worker
from tests.integration import conftest as integration
from tests.integration.conftest import Caller, World

world, analyst, demo_data_dir = integration.world, integration.analyst, integration.demo_data_dir

K = 10
FIRMS = f"""\
id: market.firms
title: Firms
provider: market
source: {{format: parquet, path: data/market/firms.parquet}}
share_class: unconditional
classification: general
privacy_unit: firm_id
columns:
  - {{name: firm_id, type: VARCHAR, sensitivity: identifier}}
  - {{name: year, type: BIGINT, sensitivity: public}}
  - {{name: district, type: VARCHAR, sensitivity: public}}
  - {{name: capital, type: BIGINT, sensitivity: sensitive}}
disclosure: {{min_group_size: {K}, dominance: null, p_percent: null}}
"""

BY_YEARS = """\
id: firms-by-district-in-years
version: 1
kind: aggregate
title: Firms and their capital by district, registered in a range of years
datasets: [market.firms]
parameters:
  lo: {type: integer, min: 2000, max: 2030}
  hi: {type: integer, min: 2000, max: 2030}
sql: |
  SELECT f.district, COUNT(*) AS firms, SUM(f.capital) AS capital
  FROM market.firms AS f WHERE f.year BETWEEN :lo AND :hi GROUP BY f.district
output: {count_column: firms}
"""

LONE_CAPITAL = 987_654_321


def firms() -> pa.Table:
    rows = [
        (year, f"d{d}", 1_000_000 + 7_919 * i)
        for i, (year, d) in enumerate(
            (y, d) for y in range(2015, 2025) if y != 2020 for d in range(3) for _ in range(12)
        )
    ]
    rows.append((2020, "d0", LONE_CAPITAL))
    return pa.table(
        {
            "firm_id": [f"F{i:05d}" for i in range(len(rows))],
            "year": [r[0] for r in rows],
            "district": [r[1] for r in rows],
            "capital": [r[2] for r in rows],
        }
    )


@pytest.fixture
def template(world: World, analyst: Caller) -> None:
    path = world.settings.data_dir / "market" / "firms.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(firms(), path)
    owner = world.as_("owner@market", "market", "data_owner")
    assert owner.post_yaml("/v1/datasets", FIRMS).status_code == 201
    proposed = analyst.post_yaml("/v1/templates", BY_YEARS)
    assert proposed.status_code == 201, proposed.text
    body = proposed.json()
    approved = owner.post(
        f"/v1/templates/{body['id']}/versions/1/approvals",
        json={"content_hash": body["content_hash"]},
    )
    assert approved.status_code == 201, approved.text


def cells(caller: Caller, lo: int, hi: int) -> dict[str, tuple[int, int]]:
    body = {"template": "firms-by-district-in-years", "parameters": {"lo": lo, "hi": hi}}
    submitted = caller.post("/v1/jobs", json={**body, "purpose": "regional statistics"})
    assert submitted.status_code == 202, submitted.text
    result = caller.get(f"/v1/jobs/{submitted.json()['id']}/result", params={"wait": 60})
    assert result.status_code == 200, result.text
    out: dict[str, Any] = result.json()
    return {row[0]: (row[1], row[2]) for row in out["rows"]}


@pytest.mark.slow
def test_three_overlapping_ranges_never_single_out_the_lone_enterprise(
    world: World, analyst: Caller, template: None
) -> None:
    whole = cells(analyst, 2015, 2024)
    left = cells(analyst, 2015, 2020)
    # another department asks for the last piece: the history is the dataset's, not a caller's
    other = world.as_("analyst@tax", "tax", "analyst")
    right = cells(other, 2020, 2024)
    assert set(whole) == {"d0", "d1", "d2"}
    assert set(left) == {"d0", "d1", "d2"}
    assert "d0" not in right  # the cell that would complete R[a,b] + R[b,c] − R[a,c]
    for district in set(whole) & set(left) & set(right):
        count = left[district][0] + right[district][0] - whole[district][0]
        capital = left[district][1] + right[district][1] - whole[district][1]
        assert count == 0 or count >= K
        assert capital != LONE_CAPITAL


def run_on(gw: Gateway, caller: Caller, lo: int, hi: int) -> dict[str, tuple[int, int]]:
    """Submit through the API; the job runs on the gateway ``gw`` (one replica's worker)."""
    body = {"template": "firms-by-district-in-years", "parameters": {"lo": lo, "hi": hi}}
    submitted = caller.post("/v1/jobs", json={**body, "purpose": "regional statistics"})
    assert submitted.status_code == 202, submitted.text
    job = worker.claim_next(gw, "replica")
    assert job is not None and job.id == submitted.json()["id"]
    worker.Runner(gw).run(job)
    result = caller.get(f"/v1/jobs/{job.id}/result")
    assert result.status_code == 200, result.text
    return {row[0]: (row[1], row[2]) for row in result.json()["rows"]}


@pytest.mark.slow
def test_the_attack_through_two_gateways_is_caught_by_the_one_whose_copy_is_stale(
    world: World, analyst: Caller, template: None, tmp_path: Path
) -> None:
    """Gateway A releases the whole range and keeps the atoms in memory; gateway B, on the same
    store, releases the left range; A's next check must see B's release. With A's copy alone
    the right range would pass (it splits A's atoms into pieces of 49 and 60 firms)."""
    world.app.state.pool.stop()  # each job runs on the replica the test names
    a: Gateway = world.app.state.gateway
    whole = run_on(a, analyst, 2015, 2024)
    # B: its own home (its audit files) with the same keys — the population key too, made by
    # the first release — and data, on the same store
    home = world.settings.home
    shutil.copytree(home, tmp_path / "b", ignore=lambda d, _: ["audit"] if d == str(home) else [])
    settings = world.settings.model_copy(update={"home": tmp_path / "b"})
    with TestClient(create_app(settings, run_workers=False)) as other:
        b: Gateway = other.app.state.gateway  # type: ignore[attr-defined]
        left = run_on(b, analyst, 2015, 2020)
        right = run_on(a, analyst, 2020, 2024)
    assert set(whole) == set(left) == {"d0", "d1", "d2"}
    assert "d0" not in right
    assert a.partitions.get(("market.firms", "firm_id")) is not None
    assert b.partitions.get(("market.firms", "firm_id")) is not None
