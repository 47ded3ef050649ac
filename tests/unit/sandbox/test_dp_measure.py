"""OpenDP measurements of dp plans: exact privacy maps, noise scales, sensitivity bounds."""

from __future__ import annotations

import statistics
from fractions import Fraction

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sandbox import (
    Column,
    DpBudget,
    DpFilter,
    DpMeasure,
    DpPlan,
    DuckDBEngine,
    MeasureKind,
    ResultTable,
    TableSchema,
    TableSource,
    TemplateRejected,
    check_dp_plan,
    compile_dp,
    dp_mechanism,
)


def plan(
    *measures: DpMeasure,
    rows: int = 1,
    groups: int = 1,
    budget: DpBudget = DpBudget(rho=Fraction(1, 10)),  # noqa: B008
    group_by: tuple[str, ...] = ("district",),
    private: bool = False,
    delta: Fraction | None = None,
    filters: tuple[DpFilter, ...] = (),
) -> DpPlan:
    return DpPlan(
        dataset_id="civil.residents",
        unit="person_id",
        rows_per_unit=rows,
        groups_per_unit=groups,
        filters=filters,
        group_by=group_by,
        private_keys=private,
        delta=delta,
        threshold=None,
        measures=measures or (DpMeasure("n_people", MeasureKind.COUNT),),
        budget=budget,
        integer_columns=frozenset({"income"}),
    )


COUNT = DpMeasure("people", MeasureKind.COUNT)
INCOME_SUM = DpMeasure("income_sum", MeasureKind.SUM, "income", Fraction(0), Fraction(1000))


def test_laplace_count_map_is_exact_and_booked_as_rho_half_epsilon_squared() -> None:
    mech = dp_mechanism(plan(COUNT, budget=DpBudget(epsilon=Fraction(1))))
    (built,) = mech.built
    assert built.scale == 1.0  # sensitivity 1 / ε 1
    assert built.measurement.map(1) == 1.0
    assert mech.rho == Fraction(1, 2)
    assert mech.delta == 0


def test_rows_per_unit_multiplies_the_sensitivity_and_the_scale() -> None:
    one = dp_mechanism(plan(COUNT, budget=DpBudget(epsilon=Fraction(1))))
    three = dp_mechanism(plan(COUNT, rows=3, budget=DpBudget(epsilon=Fraction(1))))
    assert three.built[0].scale == 3 * one.built[0].scale
    assert three.built[0].measurement.map(3) == 1.0


def test_gaussian_maps_never_exceed_the_declared_rho_and_split_it_evenly() -> None:
    mech = dp_mechanism(plan(COUNT, INCOME_SUM, budget=DpBudget(rho=Fraction(1, 10))))
    assert len(mech.built) == 2
    for b in mech.built:
        assert Fraction(b.measurement.map(b.primitive.sensitivity)) <= Fraction(1, 20)
        assert b.rho > Fraction(1, 20) * (1 - Fraction(1, 10**9))
    assert mech.built[1].primitive.sensitivity == 1000
    assert mech.rho <= Fraction(1, 10)


def test_private_key_selection_books_delta_and_picks_a_threshold() -> None:
    mech = dp_mechanism(
        plan(
            COUNT,
            rows=2,
            private=True,
            delta=Fraction(1, 10**7),
            budget=DpBudget(rho=Fraction(1, 2)),
        )
    )
    (built,) = mech.built
    assert built.threshold is not None and built.threshold > 1
    assert 0 < mech.delta <= Fraction(1, 10**7)
    assert built.measurement.map((1, 2, 2))[1] <= 1e-7


def test_private_keys_need_a_rho_cost_and_a_delta() -> None:
    with pytest.raises(TemplateRejected, match="rho"):
        plan(COUNT, private=True, delta=Fraction(1, 10**7), budget=DpBudget(epsilon=Fraction(1)))
    with pytest.raises(TemplateRejected, match="delta"):
        plan(COUNT, private=True)


def fake_table(counts: dict[str, int]) -> ResultTable:
    return ResultTable(
        columns=("district", "n"),
        types=("VARCHAR", "BIGINT"),
        rows=tuple((k, v) for k, v in counts.items()),
    )


def test_laplace_noise_has_the_declared_scale() -> None:
    """2,000 releases at scale 2: the sample std of Laplace(2) is 2·√2 ≈ 2.83. Threshold:
    within ±15 % (the std of a 2,000-sample std is ~3 % here, so this fails only if the
    scale is wrong)."""
    mech = dp_mechanism(plan(COUNT, budget=DpBudget(epsilon=Fraction(1, 2))))
    assert mech.built[0].scale == 2.0
    table = fake_table({"a": 1000})
    errors = [mech.release(table, keys=[("a",)]).rows[0][1] - 1000 for _ in range(2000)]
    sd = statistics.pstdev(errors)  # type: ignore[arg-type]
    assert 2.83 * 0.85 < sd < 2.83 * 1.15
    assert abs(statistics.mean(errors)) < 0.5  # type: ignore[arg-type]


def test_gaussian_interval_covers_about_95_percent() -> None:
    """2,000 releases. OpenDP's accuracy is a guarantee (P(|noise| > a) ≤ 5 %) and, for the
    discrete Gaussian at scale 7, rounds up to whole numbers: expect ~0.96–0.98. Thresholds:
    ≥ 0.93 (5 sample standard deviations below 0.95) and ≤ 0.995 (not uselessly wide)."""
    mech = dp_mechanism(plan(COUNT, budget=DpBudget(rho=Fraction(1, 50))))
    table = fake_table({"a": 500})
    hits = 0
    for _ in range(2000):
        out = mech.release(table, keys=[("a",)])
        low, high = out.intervals[0][0]  # type: ignore[misc]
        hits += low <= 500 <= high
    assert 0.93 <= hits / 2000 <= 0.995


def test_missing_public_key_gets_a_noisy_zero_and_unknown_groups_are_not_released() -> None:
    mech = dp_mechanism(plan(COUNT, budget=DpBudget(epsilon=Fraction(1))))
    out = mech.release(fake_table({"a": 5, "secret": 7}), keys=[("a",), ("b",)])
    assert [row[0] for row in out.rows] == ["a", "b"]


def test_key_selection_withholds_small_groups_and_lists_them() -> None:
    mech = dp_mechanism(
        plan(COUNT, private=True, delta=Fraction(1, 10**7), budget=DpBudget(rho=Fraction(1, 2)))
    )
    out = mech.release(
        fake_table({"big": 10_000, "tiny": 1}),
        keys=None,
        candidates=[("big",), ("tiny",), ("none",)],
    )
    assert [row[0] for row in out.rows] == ["big"]
    assert set(out.withheld) == {("tiny",), ("none",)}


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> TableSource:
    path = tmp_path_factory.mktemp("dp") / "people.parquet"
    # p1 has 5 rows in 3 districts; others one row each.
    ids = ["p1"] * 5 + [f"q{i}" for i in range(20)]
    districts = ["a", "b", "c", "a", "b"] + ["a"] * 10 + ["b"] * 10
    income = [10**9] * 5 + [100] * 20
    pq.write_table(pa.table({"person_id": ids, "district": districts, "income": income}), path)
    return TableSource("civil.residents", "parquet", path.resolve())


SCHEMA = TableSchema(
    "civil.residents",
    (
        Column("person_id", "VARCHAR", "identifier"),
        Column("district", "VARCHAR", "public"),
        Column("income", "BIGINT", "sensitive"),
    ),
)


def test_plan_bounds_each_units_rows_groups_and_values(people: TableSource) -> None:
    p = plan(COUNT, INCOME_SUM, rows=2, groups=1)
    check_dp_plan(p, SCHEMA, "person_id")
    table = DuckDBEngine().run(compile_dp(p, ()), {"civil.residents": people}, {})
    cells = {row[0]: row for row in table.rows}
    total_rows = sum(int(row[1]) for row in table.rows)  # type: ignore[call-overload]
    p1_rows = total_rows - 20  # p1 kept in one group only, at most 2 rows there
    assert 1 <= p1_rows <= 2
    assert sum(1 for row in table.rows if int(row[1]) > 10) <= 1  # type: ignore[call-overload]
    assert sum(int(cells[d][2]) for d in cells) == 20 * 100 + p1_rows * 1000  # type: ignore[call-overload]


def test_plan_binds_filter_parameters_never_splices_them(people: TableSource) -> None:
    p = plan(COUNT, filters=(DpFilter("income", "<", parameter="cap"),))
    query = compile_dp(p, ("cap",))
    assert "$cap" in query.duckdb_sql and ":cap" in query.spark_sql
    assert "`income`" in query.spark_sql and '"' not in query.spark_sql  # Spark quotes
    table = DuckDBEngine().run(query, {"civil.residents": people}, {"cap": 1000})
    assert sum(int(row[1]) for row in table.rows) == 20  # type: ignore[call-overload]


def test_plan_refuses_a_non_public_group_key_without_key_selection() -> None:
    schema = TableSchema(
        "civil.residents",
        (Column("person_id", "VARCHAR", "identifier"), Column("district", "VARCHAR", "sensitive")),
    )
    with pytest.raises(TemplateRejected, match="not public"):
        check_dp_plan(plan(COUNT), schema, "person_id")
    with pytest.raises(TemplateRejected, match="privacy unit"):
        check_dp_plan(plan(COUNT), SCHEMA, "other")


MEDIAN = DpMeasure(
    "median_income",
    MeasureKind.QUANTILE,
    "income",
    bins=tuple(Fraction(c) for c in (0, 100, 200, 300, 400)),
    alpha=Fraction(1, 2),
)


def test_quantile_score_is_zero_at_the_alpha_quantile() -> None:
    from sandbox.dp.measure import quantile_scores

    # values 0..99 (one each); candidates 25, 50, 75; median 50 (49 below, 49 above)
    lt, gt = [25, 50, 75], [74, 49, 24]
    assert quantile_scores(lt, gt, (1, 2)) == [49, 1, 51]


def test_quantile_privacy_map_is_linear_in_rows_per_unit() -> None:
    one = dp_mechanism(plan(MEDIAN, budget=DpBudget(epsilon=Fraction(1))))
    (b,) = one.built
    assert b.primitive.sensitivity == 1  # max(a, d - a) for α = 1/2
    assert b.measurement.map(1) <= 1.0
    assert b.scale == 2.0  # ε = 2Δ/scale for a non-monotonic score
    three = dp_mechanism(plan(MEDIAN, rows=3, budget=DpBudget(epsilon=Fraction(1))))
    assert three.built[0].scale == 3 * b.scale


def test_median_selects_the_true_candidate_with_enough_data() -> None:
    """10,000 values, true median 200: at ε = 1 the score gap to the next candidate is
    ~2,500, so 200 trials all pick 200 except with probability < 1e-100."""
    mech = dp_mechanism(plan(MEDIAN, budget=DpBudget(epsilon=Fraction(1))))
    cols = [f"q0_{side}{j}" for j in range(5) for side in ("lt", "gt")]
    below = [0, 2500, 5000, 7500, 10000]
    row = ("a", 10000, *[v for j in range(5) for v in (below[j], 10000 - below[j])])
    table = ResultTable(("district", "n", *cols), ("VARCHAR",) * (2 + len(cols)), (row,))
    picks = {mech.release(table, keys=[("a",)]).rows[0][1] for _ in range(200)}
    assert picks == {200}


def test_mean_sums_centred_values_with_half_the_sensitivity_and_no_bias() -> None:
    """2,000 releases of a mean of 62,500 values (true mean 51,000) at ε = 1: the sum's
    sensitivity is upper − lower (centred), its Laplace scale 2·10^5 in doubled units, so the
    estimate's std is ~1.6·√2; the average of 2,000 estimates must be within ±0.5 of 51,000
    (about 4 of its standard errors)."""
    mean = DpMeasure("income_mean", MeasureKind.MEAN, "income", Fraction(0), Fraction(100_000))
    mech = dp_mechanism(plan(mean, budget=DpBudget(epsilon=Fraction(1))))
    sum_b = mech.built[0]
    assert sum_b.primitive.sensitivity == 100_000 and sum_b.primitive.divisor == 2
    n = 62_500
    table = ResultTable(
        ("district", "n", "s0", "c0"),
        ("VARCHAR", "BIGINT", "BIGINT", "BIGINT"),
        (("a", n, n * (2 * 51_000 - 100_000), n),),
    )
    estimates = [mech.release(table, keys=[("a",)]).rows[0][1] for _ in range(2000)]
    assert abs(statistics.mean(estimates) - 51_000) < 0.5  # type: ignore[arg-type]
