"""Jobs on Spark through Spark Connect: the engine's per-job cost over raw Spark SQL, and DuckDB.

On one generated Parquet file (default 10M rows; `--rows 100000000` for the large run) and
one Spark Connect server (local[2], started from the pyspark wheel unless `--remote` names
one), the same compiled queries run as:

- `raw Spark SQL`: one long-lived session with the file mounted once, the same Spark text
  and bound parameters, `collect()` — what a hand-written Spark job costs;
- `Spark engine job`: `SparkEngine.run` as the gateway calls it — a pooled session lent to
  the job alone, the source sent with the statement (no view), the SQL re-checked, LIMIT
  cap+1, the session given back;
- `DuckDB engine job`: `DuckDBEngine.run` on the same file (the embedded default).

Two queries: the aggregate template (count and sum per district for a year) and the `dp`
plan of a count-and-sum template (clamping, per-unit ROW_NUMBER, exact per-group sums: the
numbers OpenDP adds noise to). The disclosure queries (contributors, population sketches)
are timed too. Overhead = engine job / raw Spark SQL on the same query (goal ≤ 1.10 at 10M).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.common import summary, timed, write_result
from bench.sandbox import DATASET, SCHEMA, SQL, YEAR, write_events
from sandbox import (
    DpBudget,
    DpFilter,
    DpMeasure,
    DpPlan,
    DuckDBEngine,
    Limits,
    MeasureKind,
    ResourceLimitExceeded,
    SparkEngine,
    TableSource,
    TemplateKind,
    compile_dp,
    compile_template,
    derive_disclosure_queries,
    population_params,
)
from sandbox.compile.spark import job_sql

PLAN = DpPlan(
    dataset_id=DATASET,
    unit="event_id",
    rows_per_unit=1,
    groups_per_unit=1,
    filters=(DpFilter("year", ">=", parameter="since"),),
    group_by=("district",),
    private_keys=False,
    delta=None,
    threshold=None,
    measures=(
        DpMeasure("events", MeasureKind.COUNT),
        DpMeasure("amount", MeasureKind.SUM, "amount", Fraction(0), Fraction(10_000)),
    ),
    budget=DpBudget(rho=Fraction(1, 10)),
    integer_columns=frozenset({"event_id", "year", "day", "amount"}),
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench spark")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--remote", default=os.environ.get("INSITU_SPARK_REMOTE"))
    args = parser.parse_args(argv or [])
    console = Console()
    server = None
    if not args.remote:
        from deploy.spark_connect import SparkConnectServer  # noqa: PLC0415

        console.print("starting a Spark Connect server (local[2]) from the pyspark wheel …")
        server = SparkConnectServer().start()
        args.remote = server.remote
    try:
        with tempfile.TemporaryDirectory(prefix="insitu-bench-spark-") as tmp:
            path = Path(tmp) / "events.parquet"
            write_events(path, args.rows)
            figures = measure(args.remote, path, args.repeat)
    finally:
        if server is not None:
            server.stop()
    report(console, args.rows, figures)


def attempt(run: Callable[[], Any], repeat: int, warmup: int = 1) -> dict[str, float]:
    """Medians of `run`, or NaNs when it exceeds the job's limits (DuckDB's dp plan at 100M
    rows does not fit its 2 GB per job): the other figures of the run are still reported."""
    try:
        return summary(timed(run, repeat=repeat, warmup=warmup))
    except ResourceLimitExceeded:
        return {"median_ms": float("nan"), "p90_ms": float("nan"), "out_of_memory": 1.0}


def measure(remote: str, path: Path, repeat: int) -> dict[str, dict[str, float]]:
    sources = {DATASET: TableSource(DATASET, "parquet", path)}
    query = compile_template(
        SQL, kind=TemplateKind.AGGREGATE, tables={DATASET: SCHEMA}, parameters=YEAR,
        count_column="events",
    )  # fmt: skip
    dp = compile_dp(PLAN, ("since",))
    derived = derive_disclosure_queries(
        query, unit="event_id", top_n=2, cells_per_hash=20, max_groups=10_000,
        unit_is_unique=True,
    )  # fmt: skip
    params: dict[str, Any] = {"year": 2020}
    dp_params: dict[str, Any] = {"since": 2018}
    limits = Limits(timeout_s=3600, max_rows=10_000)
    spark = SparkEngine(remote, limits)
    duck = DuckDBEngine(limits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pyspark.sql.connect.session import SparkSession  # noqa: PLC0415
    raw = SparkSession(connection=remote)
    raw.read.parquet(str(path)).createOrReplaceTempView("insitu_v0")
    raw_sql = job_sql(query.spark_sql, query.tables, query.parameters)
    raw_dp = job_sql(dp.spark_sql, dp.tables, dp.parameters)
    keys = population_params("k" * 64)
    try:
        figures: dict[str, dict[str, float]] = {
            "aggregate: raw Spark SQL": attempt(
                lambda: raw.sql(raw_sql, args=params).collect(), repeat
            ),
            "aggregate: Spark engine job": attempt(
                lambda: spark.run(query, sources, params), repeat
            ),
            "aggregate: DuckDB engine job": attempt(
                lambda: duck.run(query, sources, params), repeat
            ),
            "dp plan: raw Spark SQL": attempt(
                lambda: raw.sql(raw_dp, args=dp_params).collect(), repeat
            ),
            "dp plan: Spark engine job": attempt(lambda: spark.run(dp, sources, dp_params), repeat),
            "dp plan: DuckDB engine job": attempt(lambda: duck.run(dp, sources, dp_params), repeat),
            "aggregate + disclosure queries: Spark engine": attempt(
                lambda: spark.run_with_auxiliary(query, sources, params, derived.job_queries, keys),
                max(2, repeat // 2),
            ),
            "aggregate + disclosure queries: DuckDB engine": attempt(
                lambda: duck.run_with_auxiliary(query, sources, params, derived.job_queries, keys),
                max(2, repeat // 2),
            ),
        }
    finally:
        raw.stop()
        spark.close()
        duck.close()
    return figures


def report(console: Console, rows: int, figures: dict[str, dict[str, float]]) -> None:
    table = Table(title=f"Jobs on Spark local[2] vs DuckDB, {rows:,} rows (medians)")
    for col in ("what", "median ms", "p90 ms", "vs raw Spark SQL"):
        table.add_column(col, justify="right")
    ratios = {}
    for name, fig in figures.items():
        kind = name.split(":")[0]
        raw = figures.get(f"{kind}: raw Spark SQL")
        ratio = "" if raw is None else f"{fig['median_ms'] / raw['median_ms']:.2f} x"
        if raw is not None and "Spark engine" in name:
            ratios[kind] = fig["median_ms"] / raw["median_ms"]
        table.add_row(name, f"{fig['median_ms']:.0f}", f"{fig['p90_ms']:.0f}", ratio)
    console.print(table)
    for kind, over in ratios.items():
        verdict = "meets" if over <= 1.10 else "misses"
        console.print(f"{kind}: Spark engine job / raw Spark SQL = {over:.2f} ({verdict} ≤ 1.10)")
    out = write_result("spark", {"rows": rows, "figures": figures, "overhead": ratios})
    console.print(f"written {out}")


if __name__ == "__main__":
    main()
