"""A tracker attack on a dp template: two overlapping filtered counts whose difference is the
target alone (`birth_year >= y` minus `birth_year >= y + 1`, the target being the only
person born in y). Without noise the attacker is always right; with ε = 0.5 per query
(ε = 1 in total) no test can be right more often than e^ε / (1 + e^ε) ≈ 0.731.

Fixed sample: 500 trials per world. Threshold: 0.731 + 0.06 (the std of the measured rate
is ~0.014, so this fails only if the noise is missing or too small)."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from sandbox import (
    DpBudget,
    DpFilter,
    DpMeasure,
    DpPlan,
    DuckDBEngine,
    MeasureKind,
    TableSource,
    compile_dp,
    dp_mechanism,
)

TRIALS = 500
TARGET_YEAR = 1961


def world(path: Path, *, with_target: bool) -> TableSource:
    years = [1950 + (i % 10) for i in range(300) if 1950 + (i % 10) != TARGET_YEAR]
    if with_target:
        years.append(TARGET_YEAR)
    ids = [f"p{i}" for i in range(len(years))]
    pq.write_table(pa.table({"person_id": ids, "birth_year": years}), path)
    return TableSource("civil.residents", "parquet", path.resolve())


def plan(epsilon: Fraction) -> DpPlan:
    return DpPlan(
        dataset_id="civil.residents",
        unit="person_id",
        rows_per_unit=1,
        groups_per_unit=1,
        filters=(DpFilter("birth_year", ">=", parameter="since"),),
        group_by=(),
        private_keys=False,
        delta=None,
        threshold=None,
        measures=(DpMeasure("people", MeasureKind.COUNT),),
        budget=DpBudget(epsilon=epsilon),
        integer_columns=frozenset({"birth_year"}),
    )


def attack_accuracy(tmp_path: Path, epsilon: Fraction) -> float:
    p = plan(epsilon)
    mech = dp_mechanism(p)
    query = compile_dp(p, ("since",))
    engine = DuckDBEngine()
    correct = 0
    for present in (False, True):
        source = {"civil.residents": world(tmp_path / f"w{present}.parquet", with_target=present)}
        wide = engine.run(query, source, {"since": TARGET_YEAR})
        narrow = engine.run(query, source, {"since": TARGET_YEAR + 1})
        for _ in range(TRIALS):
            a = mech.release(wide, keys=[()]).rows[0][0]
            b = mech.release(narrow, keys=[()]).rows[0][0]
            guess = (a - b) > 0.5  # type: ignore[operator]
            correct += guess == present
    return correct / (2 * TRIALS)


def test_tracker_difference_does_not_reveal_the_target_beyond_epsilon(tmp_path: Path) -> None:
    bound = math.exp(1.0) / (1 + math.exp(1.0))
    assert attack_accuracy(tmp_path, Fraction(1, 2)) <= bound + 0.06


def test_tracker_succeeds_when_the_noise_is_negligible(tmp_path: Path) -> None:
    """The same attack at ε = 100 per query: the test above would fail without noise."""
    assert attack_accuracy(tmp_path, Fraction(100)) > 0.95
