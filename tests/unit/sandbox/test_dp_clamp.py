"""The clamp in a `dp` plan holds whatever a file's statistics say, for every numeric type
(real DuckDB through the sandbox engine, real Parquet files written here).

The per-row bounds are what the noise is calibrated to: a value summed unclamped breaks the
privacy guarantee silently. DuckDB folds a ``CASE WHEN x > hi`` away when the file's max is
below ``hi``; these files make that statistic wrong (a buggy writer, or pyarrow leaving NaN
out of min/max) and check that the full plan and the plan without windows still clamp."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sandbox import (
    DpBudget,
    DpMeasure,
    DpPlan,
    DuckDBEngine,
    MeasureKind,
    ResultTable,
    TableSource,
    compile_dp,
)

DATASET = "civil.residents"
BIG = 123_456_789


@pytest.fixture(scope="module")
def engine() -> Iterator[DuckDBEngine]:
    e = DuckDBEngine()
    yield e
    e.close()


def plan(lo: Fraction, hi: Fraction, *, integer: bool) -> DpPlan:
    return DpPlan(
        dataset_id=DATASET,
        unit="person_id",
        rows_per_unit=5,
        groups_per_unit=5,
        filters=(),
        group_by=(),
        private_keys=False,
        delta=None,
        threshold=None,
        measures=(
            DpMeasure("total", MeasureKind.SUM, "x", lo, hi),
            DpMeasure("mean", MeasureKind.MEAN, "x", lo, hi),
        ),
        budget=DpBudget(rho=Fraction(1, 10)),
        integer_columns=frozenset({"x"} if integer else set()),
    )


def both_plans(
    engine: DuckDBEngine, path: Path, p: DpPlan
) -> Iterator[tuple[str, dict[str, object]]]:
    source = {DATASET: TableSource(DATASET, "parquet", path)}
    for name, query in (("full", compile_dp(p, ())), ("fast", compile_dp(p, (), bounded=False))):
        table: ResultTable = engine.run(query, source, {})
        (row,) = table.rows
        yield name, dict(zip(table.columns, row, strict=True))


def write(path: Path, column: pa.Array) -> None:
    units = pa.array([f"p{i}" for i in range(len(column))])
    pq.write_table(pa.table({"person_id": units, "x": column}), path, compression="none")


def understate_max(path: Path) -> None:
    """Rewrite the file's statistics so they claim the max is 5 (the value itself stays)."""
    data = bytearray(path.read_bytes())
    big = struct.pack("<q", BIG)
    where = [i for i in range(len(data) - 7) if data[i : i + 8] == big]
    for i in where[1:]:  # the first occurrence is the value; the rest are statistics
        data[i : i + 8] = struct.pack("<q", 5)
    path.write_bytes(bytes(data))


def test_a_file_whose_statistics_understate_its_values_is_still_clamped(
    engine: DuckDBEngine, tmp_path: Path
) -> None:
    path = tmp_path / "lying.parquet"
    write(path, pa.array([1, 3, BIG], pa.int64()))
    understate_max(path)
    with duckdb.connect() as con:  # the premise: the statistics lie, the data does not
        stats = con.execute(
            "SELECT stats_max_value FROM parquet_metadata($p) WHERE path_in_schema = 'x'",
            {"p": str(path)},
        ).fetchall()
        values = con.execute("SELECT x FROM read_parquet($p)", {"p": str(path)}).fetchall()
    assert stats and all(s == ("5",) for s in stats)
    assert sorted(v for (v,) in values) == [1, 3, BIG]
    for name, got in both_plans(engine, path, plan(Fraction(0), Fraction(10), integer=True)):
        assert got["s0"] == 1 + 3 + 10, name  # BIG clamped to 10
        assert got["s1"] == 2 * (1 + 3 + 10) - 10 * 3, name  # centred: Σ(2x − (lo + hi))
        assert got["c1"] == 3, name


def test_nan_left_out_of_the_statistics_clamps_to_the_upper_bound(
    engine: DuckDBEngine, tmp_path: Path
) -> None:
    """pyarrow writes min/max without NaN; DuckDB orders NaN above every number."""
    path = tmp_path / "nan.parquet"
    write(path, pa.array([1.0, math.nan, 3.0, None, 2.0], pa.float64()))
    for name, got in both_plans(engine, path, plan(Fraction(0), Fraction(10), integer=False)):
        assert got["s0"] == (1 + 10 + 3 + 2) * 1000, name  # thousandths; NaN → 10
        assert got["c1"] == 4, name  # NULL is left out, NaN is a value
        assert got["s1"] == sum(2 * v * 1000 - 10_000 for v in (1, 10, 3, 2)), name


def test_a_float_column_is_scaled_without_passing_its_bound(
    engine: DuckDBEngine, tmp_path: Path
) -> None:
    """In FLOAT, 2147483.647 × 1000 is 2147483648: one past the bound the sensitivity uses."""
    path = tmp_path / "float.parquet"
    write(path, pa.array([2147483.647, None, None], pa.float32()))
    hi = Fraction(2147483647, 1000)
    for name, got in both_plans(engine, path, plan(Fraction(-1, 1000), hi, integer=False)):
        assert got["s0"] == 2147483647, name
        assert got["c1"] == 1, name
        assert got["s1"] == 2147483647 - (-1), name  # 2·hi − (lo + hi) = hi − lo; NULLs add 0


@pytest.mark.parametrize("kind", [pa.int8(), pa.int32(), pa.int64()])
def test_a_mean_whose_bounds_add_past_32_bits_or_whose_column_is_narrow_runs(
    engine: DuckDBEngine, tmp_path: Path, kind: pa.DataType
) -> None:
    path = tmp_path / "narrow.parquet"
    write(path, pa.array([5, 100, None], kind))
    hi = Fraction(2**31 - 1) if kind == pa.int64() else Fraction(100)
    lo = Fraction(2**30) if kind == pa.int64() else Fraction(0)
    for name, got in both_plans(engine, path, plan(lo, hi, integer=True)):
        clamped = [min(max(Fraction(v), lo), hi) for v in (5, 100)]
        assert got["s0"] == sum(clamped), name
        assert got["s1"] == sum(2 * v - (lo + hi) for v in clamped), name
        assert got["c1"] == 2, name
