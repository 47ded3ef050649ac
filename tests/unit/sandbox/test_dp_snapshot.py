"""Snapshot-verified contribution statistics: the fast plan (no per-unit windows) runs only on
the snapshot whose statistic makes the windows no-ops, gives the identical exact aggregate,
and any change to the file falls back to the full plan (real DuckDB, real files, real clock)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from fractions import Fraction
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sandbox import (
    CompiledQuery,
    DpBudget,
    DpFilter,
    DpMeasure,
    DpPlan,
    DuckDBEngine,
    MeasureKind,
    ResultTable,
    TableSource,
    compile_dp,
)
from sandbox.dp.plan import windows_are_no_ops
from sandbox.dp.snapshot import SETTLE_NS, DpRun, fingerprint, run_dp
from sandbox.engines.process import ProcessEngine

DATASET = "civil.residents"
MEASURES = (
    DpMeasure("people", MeasureKind.COUNT),
    DpMeasure("income_sum", MeasureKind.SUM, "income", Fraction(0), Fraction(5000)),
    DpMeasure("income_mean", MeasureKind.MEAN, "income", Fraction(100), Fraction(4000)),
    DpMeasure("age_mean", MeasureKind.MEAN, "age", Fraction(-1, 2), Fraction(901, 10)),
    DpMeasure("hist", MeasureKind.HISTOGRAM, "age", bins=tuple(map(Fraction, (0, 20, 40, 90)))),
    DpMeasure(
        "median",
        MeasureKind.QUANTILE,
        "income",
        bins=tuple(map(Fraction, (0, 1000, 2000, 3000))),
        alpha=Fraction(1, 2),
    ),
)


def plan(*, rows: int = 3, groups: int = 3, group_by: tuple[str, ...] = ("district",)) -> DpPlan:
    return DpPlan(
        dataset_id=DATASET,
        unit="person_id",
        rows_per_unit=rows,
        groups_per_unit=groups,
        filters=(DpFilter("income", ">=", value=0),),
        group_by=group_by,
        private_keys=False,
        delta=None,
        threshold=None,
        measures=MEASURES,
        budget=DpBudget(rho=Fraction(1, 10)),
        integer_columns=frozenset({"income"}),
    )


def write(path: Path, units: list[str | None], *, seed: int = 0) -> None:
    """Rows for ``units`` (repeats: several rows of one unit) over 4 districts (NULL too)."""
    n = len(units)
    districts = [None if (i + seed) % 11 == 0 else f"d{(i * 7 + seed) % 4}" for i in range(n)]
    pq.write_table(
        pa.table(
            {
                "person_id": pa.array(units, pa.string()),
                "district": pa.array(districts, pa.string()),
                "income": pa.array([(i * 37 + seed) % 6000 - 200 for i in range(n)], pa.int64()),
                "age": pa.array(
                    [None if i % 13 == 5 else ((i * 3) % 95) + 0.25 for i in range(n)],
                    pa.float64(),
                ),
            }
        ),
        path,
        compression="none",
        use_dictionary=False,
        write_statistics=False,
    )


def units(n: int, per_unit: int = 1, nulls: int = 0) -> list[str | None]:
    """``n`` units with ``per_unit`` rows each, then ``nulls`` rows without a unit."""
    return [f"p{i:05d}" for i in range(n) for _ in range(per_unit)] + [None] * nulls


def settle() -> None:
    time.sleep(SETTLE_NS / 1e9 + 0.1)


@pytest.fixture(scope="module")
def engine() -> Iterator[DuckDBEngine]:
    e = DuckDBEngine()
    yield e
    e.close()


@pytest.fixture(scope="module")
def _settled_sources(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Path]]:
    """One fresh file for each test of this module that asks for `source`, all written up
    front and settled together: one settling wait for the module instead of one per test.
    Each test still gets its own file, untouched since it was written and settled."""
    wanted = sum(
        1
        for item in request.session.items
        if item.module is request.module and "source" in getattr(item, "fixturenames", ())
    )
    paths = []
    for i in range(wanted):
        path = tmp_path_factory.mktemp(f"source-{i}") / "residents.parquet"
        write(path, units(300, per_unit=2, nulls=40))  # two rows per unit; 40 NULL-unit rows
        paths.append(path)
    if paths:
        settle()
    yield paths


@pytest.fixture
def source(_settled_sources: list[Path]) -> TableSource:
    assert _settled_sources, "more tests asked for `source` than were counted"
    return TableSource(DATASET, "parquet", _settled_sources.pop(0))


def params(p: DpPlan) -> dict[str, object]:
    return dict(p.constants())


def full_and_fast(p: DpPlan) -> tuple[CompiledQuery, CompiledQuery]:
    return compile_dp(p, ()), compile_dp(p, (), bounded=False)


def measured(engine: DuckDBEngine, source: TableSource, p: DpPlan) -> tuple[str, int]:
    full, _ = full_and_fast(p)
    out = run_dp(engine, DpRun(DATASET, p.unit, full, measure=True), {DATASET: source}, params(p))
    assert out.path == "full"
    assert out.snapshot is not None and out.max_rows is not None
    assert out.null_rows == 40
    return out.snapshot, out.max_rows


def sorted_rows(table: ResultTable) -> list[tuple[object, ...]]:
    return sorted(table.rows, key=repr)


@pytest.mark.parametrize(
    ("rows", "groups", "group_by"),
    [(2, 2, ("district",)), (3, 2, ("district",)), (5, 1000, ()), (2, 1, ())],
)
@pytest.mark.slow
def test_the_fast_plan_gives_the_identical_exact_aggregate(
    engine: DuckDBEngine,
    source: TableSource,
    rows: int,
    groups: int,
    group_by: tuple[str, ...],
) -> None:
    p = plan(rows=rows, groups=groups, group_by=group_by)
    snapshot, max_rows = measured(engine, source, p)
    assert max_rows == 2  # the 40 NULL-unit rows count as no unit, as the plan treats them
    assert windows_are_no_ops(p, max_rows)
    full, fast = full_and_fast(p)
    assert "ROW_NUMBER" in full.duckdb_sql and "ROW_NUMBER" not in fast.duckdb_sql
    sources = {DATASET: source}
    out = run_dp(engine, DpRun(DATASET, p.unit, full, fast, snapshot), sources, params(p))
    assert out.path == "fast"
    assert sorted_rows(out.table) == sorted_rows(engine.run(full, sources, params(p)))
    assert out.table.columns == full.output_columns


@pytest.mark.slow
def test_without_null_units_the_unit_filter_goes_too_and_sums_are_exact(
    engine: DuckDBEngine, tmp_path: Path
) -> None:
    path = tmp_path / "no-nulls.parquet"
    write(path, units(250, per_unit=2))
    settle()
    source = TableSource(DATASET, "parquet", path)
    p = plan(rows=2, groups=2)
    full = compile_dp(p, ())
    sources = {DATASET: source}
    first = run_dp(engine, DpRun(DATASET, p.unit, full, measure=True), sources, params(p))
    assert (first.max_rows, first.null_rows) == (2, 0)
    fast = compile_dp(p, (), bounded=False, units_not_null=True)
    assert '"person_id" IS NOT NULL' not in fast.duckdb_sql
    assert '"person_id" IS NOT NULL' in compile_dp(p, (), bounded=False).duckdb_sql
    out = run_dp(engine, DpRun(DATASET, p.unit, full, fast, first.snapshot), sources, params(p))
    assert out.path == "fast"
    assert sorted_rows(out.table) == sorted_rows(first.table)
    # the exact sums, from the file in Python: income clamped to [0, 5000] and [100, 4000]
    data = pq.read_table(path).to_pylist()
    kept = [r for r in data if r["income"] >= 0 and r["district"] == "d1"]
    (row,) = [r for r in out.table.rows if r[0] == "d1"]
    got = dict(zip(out.table.columns, row, strict=True))
    assert got["n"] == len(kept)
    assert got["s1"] == sum(min(max(r["income"], 0), 5000) for r in kept)
    assert got["s2"] == sum(2 * min(max(r["income"], 100), 4000) - 4100 for r in kept)
    ages = [r["age"] for r in kept if r["age"] is not None]
    assert got["c3"] == len(ages)
    assert got["s3"] == sum(round(2 * min(max(a * 1000, -500), 90100) - 89600) for a in ages)


def test_statistics_over_the_bounds_keep_the_windows() -> None:
    assert not windows_are_no_ops(plan(rows=1, groups=1), 2)
    assert not windows_are_no_ops(plan(rows=3, groups=2), 3)  # the group window would bite
    assert windows_are_no_ops(plan(rows=3, groups=2, group_by=()), 3)  # no group window
    assert windows_are_no_ops(plan(rows=3, groups=3), 3)
    assert not windows_are_no_ops(plan(), -1)


def test_a_fresh_file_is_not_measured(engine: DuckDBEngine, tmp_path: Path) -> None:
    """Within the settling margin a later write in the same clock tick could keep the ctime."""
    path = tmp_path / "fresh.parquet"
    write(path, units(50))
    p = plan()
    out = run_dp(
        engine,
        DpRun(DATASET, p.unit, compile_dp(p, ()), measure=True),
        {DATASET: TableSource(DATASET, "parquet", path)},
        params(p),
    )
    assert out.path == "full" and out.snapshot is None and out.max_rows is None


def _append_one_row_for_one_unit(path: Path) -> None:
    write(path, [*units(300, per_unit=2, nulls=40), "p00007"])


def _same_size_and_mtime(path: Path) -> None:
    """One unit with 600 rows, same byte size, mtime put back with os.utime."""
    before = path.stat()
    write(path, ["p00007"] * 600 + [None] * 40)
    assert path.stat().st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def _replaced_by_rename(path: Path) -> None:
    before = path.stat()
    other = path.with_name("next.parquet")
    write(other, ["p00007"] * 600 + [None] * 40)
    os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))
    other.replace(path)


def _touched(path: Path) -> None:
    os.utime(path)


def n_total(table: ResultTable) -> int:
    n = table.columns.index("n")
    return sum(int(str(row[n])) for row in table.rows)


@pytest.mark.parametrize(
    ("change", "windows_bite"),
    [
        (_append_one_row_for_one_unit, True),  # that unit now has 3 rows, over rows_per_unit 2
        (_same_size_and_mtime, True),  # one unit with 600 rows
        (_replaced_by_rename, True),
        (_touched, False),  # same data: the point is only that a new ctime is a new snapshot
    ],
)
def test_a_changed_snapshot_falls_back_to_the_full_plan(
    engine: DuckDBEngine, source: TableSource, change: object, windows_bite: bool
) -> None:
    p = plan(rows=2, groups=2)
    snapshot, _ = measured(engine, source, p)
    assert callable(change)
    change(source.path)
    full, fast = full_and_fast(p)
    sources = {DATASET: source}
    out = run_dp(engine, DpRun(DATASET, p.unit, full, fast, snapshot), sources, params(p))
    assert out.path == "fallback"
    bounded = n_total(engine.run(full, sources, params(p)))  # counts: no random choice
    assert n_total(out.table) == bounded
    assert (n_total(engine.run(fast, sources, params(p))) != bounded) is windows_bite


class _WriterDuringRead:
    """The real engine, and a writer that rewrites the file while the fast plan reads it."""

    def __init__(self, engine: DuckDBEngine, fast: CompiledQuery) -> None:
        self.engine, self.fast, self.queries = engine, fast, 0

    def run(
        self, query: CompiledQuery, sources: Mapping[str, TableSource], p: Mapping[str, object]
    ) -> ResultTable:
        self.queries += 1
        table = self.engine.run(query, sources, p)
        if query is self.fast:
            _same_size_and_mtime(sources[DATASET].path)
        return table


def test_a_change_during_the_fast_read_discards_its_result(
    engine: DuckDBEngine, source: TableSource
) -> None:
    p = plan(rows=2, groups=2)
    snapshot, _ = measured(engine, source, p)
    full, fast = full_and_fast(p)
    racing = _WriterDuringRead(engine, fast)
    request = DpRun(DATASET, p.unit, full, fast, snapshot)
    out = run_dp(racing, request, {DATASET: source}, params(p))
    assert out.path == "fallback" and racing.queries == 2
    assert n_total(out.table) == 2  # one unit left with 600 rows, 2 counted


def test_a_statistic_is_bound_to_its_unit_column_and_dataset(
    engine: DuckDBEngine, source: TableSource
) -> None:
    p = plan()
    snapshot, _ = measured(engine, source, p)
    assert fingerprint(source, "person_id") == snapshot
    assert fingerprint(source, "district") != snapshot
    renamed = TableSource("civil.other", "parquet", source.path)
    assert fingerprint(renamed, "person_id") != snapshot
    assert fingerprint(TableSource(DATASET, "csv", source.path), "person_id") != snapshot
    full, fast = full_and_fast(p)
    other_unit = DpRun(DATASET, "district", full, fast, snapshot)
    assert run_dp(engine, other_unit, {DATASET: source}, params(p)).path == "fallback"


def test_a_directory_or_missing_file_has_no_fingerprint(tmp_path: Path) -> None:
    assert fingerprint(TableSource(DATASET, "parquet", tmp_path), "person_id") is None
    assert fingerprint(TableSource(DATASET, "parquet", tmp_path / "no"), "person_id") is None


def test_the_worker_process_fingerprints_and_falls_back_too(source: TableSource) -> None:
    p = plan(rows=2, groups=2)
    full, fast = full_and_fast(p)
    sources = {DATASET: source}
    engine = ProcessEngine(spares=0)
    try:
        first = engine.run_dp(DpRun(DATASET, p.unit, full, measure=True), sources, params(p))
        assert first.snapshot == fingerprint(source, p.unit) and first.max_rows == 2
        request = DpRun(DATASET, p.unit, full, fast, first.snapshot)
        fast_out = engine.run_dp(request, sources, params(p))
        assert fast_out.path == "fast"
        assert sorted_rows(fast_out.table) == sorted_rows(first.table)
        _same_size_and_mtime(source.path)
        assert engine.run_dp(request, sources, params(p)).path == "fallback"
    finally:
        engine.close()


@pytest.mark.parametrize(("limit", "path"), [(2, "fast"), (3, "fast"), (1, "full")])
def test_a_first_run_measures_then_takes_the_fast_plan_only_within_the_limit(
    engine: DuckDBEngine, source: TableSource, limit: int, path: str
) -> None:
    p = plan(rows=2, groups=2)
    full, fast = full_and_fast(p)
    sources = {DATASET: source}
    request = DpRun(DATASET, p.unit, full, fast, measure=True, limit=limit)
    out = run_dp(engine, request, sources, params(p))
    assert out.path == path
    assert (out.snapshot, out.max_rows, out.null_rows) == (fingerprint(source, p.unit), 2, 40)
    if path == "fast":
        assert sorted_rows(out.table) == sorted_rows(engine.run(full, sources, params(p)))


def test_a_change_between_measuring_and_the_fast_read_falls_back(
    engine: DuckDBEngine, source: TableSource
) -> None:
    p = plan(rows=2, groups=2)
    full, fast = full_and_fast(p)
    racing = _WriterDuringRead(engine, fast)
    request = DpRun(DATASET, p.unit, full, fast, measure=True, limit=2)
    out = run_dp(racing, request, {DATASET: source}, params(p))
    assert out.path == "fallback" and out.snapshot is None and racing.queries == 3
    assert n_total(out.table) == 2  # one unit left with 600 rows, 2 counted


def test_a_run_request_is_consistent() -> None:
    full, fast = full_and_fast(plan())
    for bad in (
        {"fast": fast},  # neither a stored snapshot nor a limit
        {"fast": fast, "expected": "sha256:x", "measure": True, "limit": 2},
        {"measure": False, "limit": 2, "fast": fast},
        {"expected": "sha256:x"},
    ):
        with pytest.raises(ValueError, match="a "):
            DpRun(DATASET, "person_id", full, **bad)  # type: ignore[arg-type]
