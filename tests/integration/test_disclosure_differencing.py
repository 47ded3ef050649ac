"""Disclosure control through the real app: differencing across releases, dominance, shape.

A `civil.people` dataset (person_id as privacy unit) where exactly one person is aged 50 and
one person in district "d3" earns far more than everyone else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from gateway.store import db, schema
from tests.integration.conftest import Caller, World

PEOPLE = """\
id: civil.people
title: People
provider: civil
source: {format: parquet, path: data/civil/people.parquet}
share_class: unconditional
classification: general
privacy_unit: person_id
columns:
  - {name: person_id, type: VARCHAR, sensitivity: identifier}
  - {name: age, type: BIGINT, sensitivity: quasi_identifier}
  - {name: district, type: VARCHAR, sensitivity: public}
  - {name: income, type: BIGINT, sensitivity: sensitive}
disclosure: {min_group_size: 10}
"""

AGE_RANGE = """\
id: people-in-age-range
version: 1
kind: aggregate
title: People in an age range
datasets: [civil.people]
parameters:
  lo: {type: integer, min: 0, max: 120}
  hi: {type: integer, min: 0, max: 120}
sql: SELECT COUNT(*) AS people FROM civil.people AS p WHERE p.age BETWEEN :lo AND :hi
output: {count_column: people}
"""

INCOME = """\
id: income-by-district
version: 1
kind: aggregate
title: People and income by district
datasets: [civil.people]
sql: |
  SELECT p.district, COUNT(*) AS people, SUM(p.income) AS income
  FROM civil.people AS p GROUP BY p.district
output: {count_column: people}
"""


def people() -> pa.Table:
    ages = [a for a in range(20, 70) if a != 50 for _ in range(6)] + [50]
    n = len(ages)
    income = [3000 + (i * 37) % 900 for i in range(n)]
    district = [f"d{i % 4}" for i in range(n)]
    income[3] = 10_000_000  # person 3 lives in d3 and dominates its income total
    return pa.table(
        {
            "person_id": [f"P{i:04d}" for i in range(n)],
            "age": ages,
            "district": district,
            "income": income,
        }
    )


@pytest.fixture
def templates(world: World, analyst: Caller) -> None:
    path = world.settings.data_dir / "civil" / "people.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(people(), path)
    owner = world.as_("owner@civil", "civil", "data_owner")
    assert owner.post_yaml("/v1/datasets", PEOPLE).status_code == 201
    for document in (AGE_RANGE, INCOME):
        proposed = analyst.post_yaml("/v1/templates", document)
        assert proposed.status_code == 201, proposed.text
        body = proposed.json()
        approved = owner.post(
            f"/v1/templates/{body['id']}/versions/1/approvals",
            json={"content_hash": body["content_hash"]},
        )
        assert approved.status_code == 201, approved.text


def run(caller: Caller, template: str, **parameters: int) -> dict[str, Any]:
    body = {"template": template, "parameters": parameters, "purpose": "population statistics"}
    submitted = caller.post("/v1/jobs", json=body)
    assert submitted.status_code == 202, submitted.text
    result = caller.get(f"/v1/jobs/{submitted.json()['id']}/result", params={"wait": 60})
    assert result.status_code == 200, result.text
    out: dict[str, Any] = result.json()
    return out


@pytest.mark.slow
def test_overlapping_ranges_that_isolate_one_person_are_withheld(
    world: World, analyst: Caller, templates: None
) -> None:
    first = run(analyst, "people-in-age-range", lo=30, hi=50)
    assert first["status"] == "released"
    assert first["rows"] == [[20 * 6 + 1]]
    second = run(analyst, "people-in-age-range", lo=30, hi=49)
    assert second["status"] == "suppressed"
    assert second["rows"] == []
    assert [c["rule"] for c in second["withheld"]] == ["differencing"]
    # the same response shape whether or not anything was withheld
    assert set(first) == set(second)
    assert first["columns"] == second["columns"]


def test_differencing_applies_across_departments(
    world: World, analyst: Caller, templates: None
) -> None:
    assert run(analyst, "people-in-age-range", lo=30, hi=50)["status"] == "released"
    other = world.as_("analyst@tax", "tax", "analyst")
    later = run(other, "people-in-age-range", lo=30, hi=49)
    assert [c["rule"] for c in later["withheld"]] == ["differencing"]


@pytest.mark.slow
def test_the_same_population_again_and_far_apart_ranges_are_released(
    world: World, analyst: Caller, templates: None
) -> None:
    assert run(analyst, "people-in-age-range", lo=30, hi=50)["status"] == "released"
    assert run(analyst, "people-in-age-range", lo=30, hi=50)["status"] == "released"
    assert run(analyst, "people-in-age-range", lo=30, hi=47)["status"] == "released"  # 19 apart


@pytest.mark.slow
def test_release_history_stores_sketches_not_ids(
    world: World, analyst: Caller, templates: None
) -> None:
    run(analyst, "people-in-age-range", lo=30, hi=50)
    run(analyst, "people-in-age-range", lo=30, hi=50)  # the same population is stored once
    engine = sa.create_engine(world.settings.resolved_database_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(schema.release_cells)).all()
    engine.dispose()
    assert [(r.dataset_id, r.unit_column, r.units) for r in rows] == [
        ("civil.people", "person_id", 121)
    ]
    assert not any(pid.encode() in rows[0].sketch for pid in people()["person_id"].to_pylist())


@pytest.mark.slow
def test_a_dominated_income_total_is_withheld_with_its_rule(
    world: World, analyst: Caller, templates: None
) -> None:
    body = run(analyst, "income-by-district")
    withheld = {c["key"]["district"]: c["rule"] for c in body["withheld"]}
    assert withheld["d3"] == "dominance"
    assert "d3" not in {row[0] for row in body["rows"]}
    assert len(withheld) >= 2  # a secondary cell protects d3 from the overall total
    assert body["disclosure"]["counted"] == "distinct units"


def reasons(body: dict[str, Any]) -> list[str]:
    return [c["reason"] for c in body["withheld"] if c["rule"] == "differencing"]


@pytest.mark.slow
def test_cells_released_with_the_partition_are_left_to_the_atom_check(
    world: World, analyst: Caller, templates: None
) -> None:
    """The pairwise comparison skips cells the atom check covers: the near-repeat is caught,
    and caught by the atoms (its reason), not by decoding the earlier cell's sketch."""
    assert run(analyst, "people-in-age-range", lo=30, hi=50)["status"] == "released"
    second = run(analyst, "people-in-age-range", lo=30, hi=49)
    assert second["status"] == "suppressed"
    assert len(reasons(second)) == 1 and "adding and subtracting" in reasons(second)[0]


@pytest.mark.slow
def test_cells_released_before_the_partition_started_are_still_compared_pairwise(
    world: World, analyst: Caller, templates: None
) -> None:
    """A store upgraded from before the atom check: its earlier cells are in
    `release_cells` but in no partition. The pairwise comparison still covers them."""
    assert run(analyst, "people-in-age-range", lo=30, hi=50)["status"] == "released"
    engine = sa.create_engine(world.settings.resolved_database_url)
    with engine.begin() as conn:  # forget the partition, as before the atom check existed
        for table in (
            schema.release_refinements,
            schema.release_partitions,
            schema.release_partition_heads,
        ):
            conn.execute(table.delete())
    engine.dispose()
    world.app.state.gateway.partitions.drop(("civil.people", "person_id"))
    second = run(analyst, "people-in-age-range", lo=30, hi=49)
    assert second["status"] == "suppressed"
    assert len(reasons(second)) == 1 and "differs from a cell released before" in reasons(second)[0]
    # ... and from then on the partition covers what is released: the far range passes.
    assert run(analyst, "people-in-age-range", lo=30, hi=47)["status"] == "released"


@pytest.mark.parametrize("earlier", [False, True], ids=["first-release", "later-release"])
def test_a_release_recorded_while_another_was_being_decided_is_seen_before_that_one_is_recorded(
    world: World,
    analyst: Caller,
    templates: None,
    monkeypatch: pytest.MonkeyPatch,
    earlier: bool,
) -> None:
    """A release is decided on a read snapshot, without the dataset's lock. Another
    department's release recorded after that snapshot (here: between it and the lock) moves
    the partition, so the first one's record is refused as stale and it is decided again
    under the lock: 30–49 is then withheld against 30–50, as if they had run one after the
    other. (Without a stored partition yet, or with one: the head is inserted or moved.)"""
    if earlier:  # a far range first, so the partition has a head to move
        assert run(analyst, "people-in-age-range", lo=60, hi=69)["status"] == "released"
    real = db.snapshot
    interleaved: list[dict[str, Any]] = []

    @contextmanager
    def snapshot_then_another_release(engine: sa.Engine) -> Iterator[sa.Connection]:
        with real(engine) as conn:
            yield conn
        if not interleaved:  # once: the other release runs its own snapshot unhindered
            interleaved.append({})
            other = world.as_("analyst@tax", "tax", "analyst")
            interleaved[0] = run(other, "people-in-age-range", lo=30, hi=50)

    monkeypatch.setattr(db, "snapshot", snapshot_then_another_release)
    decided_first = run(analyst, "people-in-age-range", lo=30, hi=49)
    assert interleaved[0]["status"] == "released"
    assert decided_first["status"] == "suppressed"
    assert [c["rule"] for c in decided_first["withheld"]] == ["differencing"]


def test_a_repeated_release_is_released_and_records_nothing(
    world: World, analyst: Caller, templates: None
) -> None:
    """The same populations again (a dashboard's query run twice) are every one a union of
    atoms and released before: released, with no refinement, log row or history cell
    written. The release after them is still checked against everything recorded."""

    def stored() -> tuple[Any, ...]:
        engine = sa.create_engine(world.settings.resolved_database_url)
        with engine.connect() as conn:
            heads = conn.execute(
                sa.select(
                    schema.release_partition_heads.c.head, schema.release_partition_heads.c.head_tag
                )
            ).all()
            log = conn.execute(sa.select(sa.func.count()).select_from(schema.release_refinements))
            cells = conn.execute(sa.select(sa.func.count()).select_from(schema.release_cells))
            counted = (log.scalar_one(), cells.scalar_one())
        engine.dispose()
        return (tuple(heads), counted)

    first = run(analyst, "people-in-age-range", lo=30, hi=50)
    before = stored()
    again = run(analyst, "people-in-age-range", lo=30, hi=50)
    assert again["status"] == "released" and again["rows"] == first["rows"]
    assert stored() == before
    assert run(analyst, "people-in-age-range", lo=30, hi=49)["status"] == "suppressed"
    assert stored() == before  # nothing released, nothing recorded
    assert run(analyst, "people-in-age-range", lo=30, hi=40)["status"] == "released"
    assert stored() != before


def test_a_population_only_another_department_released_is_recorded_again_for_this_one(
    world: World, analyst: Caller, templates: None
) -> None:
    """A release that records nothing is cheaper, so whether one does must tell a caller
    nothing about other departments' releases: a population released only by another
    department is recorded again (under the caller's department), as a new one would be;
    the caller's own repeat then records nothing."""

    def cells() -> list[tuple[str, int]]:
        engine = sa.create_engine(world.settings.resolved_database_url)
        with engine.connect() as conn:
            c = schema.release_cells
            rows = conn.execute(sa.select(c.c.department, c.c.units).order_by(c.c.id)).all()
        engine.dispose()
        return [(r.department, r.units) for r in rows]

    other = world.as_("analyst@tax", "tax", "analyst")
    assert run(analyst, "people-in-age-range", lo=30, hi=50)["status"] == "released"
    assert run(other, "people-in-age-range", lo=30, hi=50)["status"] == "released"
    assert cells() == [("stats", 121), ("tax", 121)]
    assert run(other, "people-in-age-range", lo=30, hi=50)["status"] == "released"
    assert cells() == [("stats", 121), ("tax", 121)]
