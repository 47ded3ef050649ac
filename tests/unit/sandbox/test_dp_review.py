"""Hostile review of the dp plan: the sensitivity a measurement is built for must bound what
one unit can change in the engine's exact aggregate, rounding included."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sandbox import (
    DpBudget,
    DpMeasure,
    DpPlan,
    DuckDBEngine,
    MeasureKind,
    TableSource,
    TemplateRejected,
    compile_dp,
    dp_mechanism,
)


def _plan(measure: DpMeasure, rows: int) -> DpPlan:
    return DpPlan(
        dataset_id="civil.residents",
        unit="person_id",
        rows_per_unit=rows,
        groups_per_unit=rows,
        filters=(),
        group_by=(),
        private_keys=False,
        delta=None,
        threshold=None,
        measures=(measure,),
        budget=DpBudget(rho=Fraction(1, 10)),
        integer_columns=frozenset(),  # "score" is a DOUBLE: summed in thousandths
    )


@pytest.mark.parametrize("kind", [MeasureKind.SUM, MeasureKind.MEAN])
@pytest.mark.parametrize(
    ("lower", "upper"),
    [(Fraction(0), Fraction(1, 2000)), (Fraction(-1, 2000), Fraction(0))],
)
def test_bounds_finer_than_the_fixed_point_are_refused(
    kind: MeasureKind, lower: Fraction, upper: Fraction
) -> None:
    """×1000 the bound is ±0.5, which ROUND takes to ±1: a unit's 2 rows would move the sum
    by 2 where the measurement was built for 1 (or 2·|x−mid|=0.5 → 1 for a mean). Neither the
    measurement nor the query is built."""
    p = _plan(DpMeasure("score", kind, "score", lower, upper), rows=2)
    with pytest.raises(TemplateRejected, match="at most 3 decimals"):
        dp_mechanism(p)
    with pytest.raises(TemplateRejected, match="at most 3 decimals"):
        compile_dp(p, ())


@pytest.mark.parametrize("kind", [MeasureKind.SUM, MeasureKind.MEAN])
@pytest.mark.parametrize(
    ("lower", "upper"),
    [(Fraction(0), Fraction(1, 1000)), (Fraction(-1, 1000), Fraction(0))],
)
def test_bounds_on_the_fixed_point_bound_what_one_unit_moves(
    kind: MeasureKind, lower: Fraction, upper: Fraction, tmp_path: Path
) -> None:
    """At the finest accepted bound, the engine's exact aggregate of one unit stays within the
    sensitivity the measurement was built for, rounding included."""
    p = _plan(DpMeasure("score", kind, "score", lower, upper), rows=2)
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"person_id": ["u", "u"], "score": [float(upper or lower)] * 2}), path)
    src = {"civil.residents": TableSource("civil.residents", "parquet", path.resolve())}
    mech = dp_mechanism(p)
    table = DuckDBEngine().run(compile_dp(p, ()), src, {})
    sens = mech.built[0].primitive.sensitivity
    assert abs(int(table.rows[0][1])) <= sens  # type: ignore[call-overload]


def test_only_the_contrib_feature_is_ever_enabled() -> None:
    """Building a mechanism enables OpenDP's `contrib` and nothing else: `floating-point`
    exposes float attacks, `honest-but-curious` lets code declare its own privacy."""
    import opendp.mod

    dp_mechanism(_plan(DpMeasure("n", MeasureKind.COUNT), rows=1))
    assert set(opendp.mod.GLOBAL_FEATURES) == {"contrib"}


def test_the_opendp_imports_stay_in_dp_measure_and_dp_build() -> None:
    """No other product module imports opendp or calls enable_features."""
    root = Path(__file__).resolve().parents[3]
    offenders = [
        str(p.relative_to(root))
        for pkg in ("sandbox", "gateway", "policies", "audit")
        for p in (root / pkg).rglob("*.py")
        if str(p.relative_to(root)) not in ("sandbox/dp/measure.py", "sandbox/dp/build.py")
        and ("opendp" in (text := p.read_text()) or "enable_features" in text)
    ]
    assert offenders == []
