"""Per-job cost of the sandbox process boundary, against the same SQL run in-process.

On one Parquet file (default 100k rows; `--rows N`), the same compiled template runs:

- `raw DuckDB`: a plain `duckdb.connect()` and the SQL (no lock-down), per job;
- `in-process`: `DuckDBEngine` (fresh locked-down instance per job, one kept ready);
- `worker process`: `ProcessEngine` (the gateway's default: a pre-started worker process,
  typed JSON frames over pipes, the same locked-down engine inside);
- `+ disclosure queries`: the worker also runs the derived query a job runs (the census:
  distinct units, top contributions and the member hashes, from which the gateway makes the
  population sketches, in one pass; the unit column is unique per row, as the gateway finds
  for this data, so rows are not grouped by unit).

The break-down rows isolate worker dispatch (a round trip that runs no query), lock-down
(open + SET + read-back of a fresh instance, in-process) and result transfer (10,000 result
rows through the pipe, less the same in-process).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from bench.common import summary, timed, write_result
from sandbox import (
    Column,
    DuckDBEngine,
    Limits,
    ParameterSpec,
    Sensitivity,
    TableSchema,
    TableSource,
    TemplateKind,
    compile_template,
)
from sandbox.compile.auxiliary import population_params
from sandbox.compile.disclosure import derive_disclosure_queries
from sandbox.engines.process import ProcessEngine

DATASET = "bench.events"
SQL = """
SELECT e.district, COUNT(*) AS events, SUM(e.amount) AS amount
FROM bench.events AS e WHERE e.year = :year GROUP BY e.district
"""
WIDE_SQL = "SELECT e.day, COUNT(*) AS events FROM bench.events AS e GROUP BY e.day"
SCHEMA = TableSchema(
    DATASET,
    (
        Column("event_id", "BIGINT", Sensitivity.IDENTIFIER),
        Column("district", "VARCHAR", Sensitivity.PUBLIC),
        Column("year", "INTEGER", Sensitivity.PUBLIC),
        Column("day", "INTEGER", Sensitivity.PUBLIC),
        Column("amount", "BIGINT", Sensitivity.SENSITIVE),
    ),
)
YEAR = {"year": ParameterSpec.from_mapping("year", {"type": "integer", "min": 2000, "max": 2030})}


def write_events(path: Path, rows: int) -> None:
    rng = np.random.default_rng(7)
    pq.write_table(
        pa.table(
            {
                "event_id": np.arange(rows, dtype=np.int64),
                "district": np.array([f"district_{i:02d}" for i in range(16)])[
                    rng.integers(0, 16, rows)
                ],
                "year": rng.integers(2015, 2025, rows).astype(np.int32),
                "day": (np.arange(rows) % 10_000).astype(np.int32),
                "amount": rng.integers(1, 10_000, rows),
            }
        ),
        path,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench sandbox")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args(argv or [])
    console = Console()
    with tempfile.TemporaryDirectory(prefix="insitu-bench-") as tmp:
        path = Path(tmp) / "events.parquet"
        write_events(path, args.rows)
        sources = {DATASET: TableSource(DATASET, "parquet", path)}
        query = compile_template(
            SQL, kind=TemplateKind.AGGREGATE, tables={DATASET: SCHEMA}, parameters=YEAR,
            count_column="events",
        )  # fmt: skip
        wide = compile_template(
            WIDE_SQL, kind=TemplateKind.AGGREGATE, tables={DATASET: SCHEMA}, parameters={},
            count_column="events",
        )  # fmt: skip
        derived = derive_disclosure_queries(
            query,
            unit="event_id",
            top_n=2,
            cells_per_hash=20,
            max_groups=10_000,
            unit_is_unique=True,
        )
        params = {"year": 2020}
        limits = Limits(max_rows=10_000)
        inproc = DuckDBEngine(limits, spares=1)
        proc = ProcessEngine(limits, spares=1)
        proc.run(query, sources, params)  # a worker started and warm
        time.sleep(1.0)  # let the spare instances open
        raw_sql = query.duckdb_sql.replace(f"{DATASET}", f"read_parquet('{path}')")

        def raw() -> None:
            with duckdb.connect() as con:
                con.execute(raw_sql, params).fetchall()

        def lockdown() -> None:  # a fresh locked database (no key: none is kept), then closed
            locked, con = inproc._open([sources[DATASET]], None)
            inproc._close(con, None, locked, failed=False)

        figures = {
            "raw DuckDB": summary(timed(raw, repeat=args.repeat)),
            "in-process engine": summary(
                timed(lambda: inproc.run(query, sources, params), repeat=args.repeat)
            ),
            "worker process": summary(
                timed(lambda: proc.run(query, sources, params), repeat=args.repeat)
            ),
            "worker process + disclosure queries": summary(
                timed(
                    lambda: proc.run_with_auxiliary(
                        query, sources, params, derived.job_queries, population_params("k" * 64)
                    ),
                    repeat=args.repeat,
                )
            ),
            "dispatch (round trip, no query)": summary(
                timed(proc.worker_limits, repeat=args.repeat)
            ),
            "lock-down (fresh instance, in-process)": summary(timed(lockdown, repeat=args.repeat)),
            "10,000-row result, in-process": summary(
                timed(lambda: inproc.run(wide, sources, {}), repeat=args.repeat)
            ),
            "10,000-row result, worker process": summary(
                timed(lambda: proc.run(wide, sources, {}), repeat=args.repeat)
            ),
        }
        inproc.close()
        proc.close()
    base = figures["in-process engine"]["median_ms"]
    overhead = figures["worker process"]["median_ms"] - base
    transfer = (
        figures["10,000-row result, worker process"]["median_ms"]
        - figures["10,000-row result, in-process"]["median_ms"]
    )
    table = Table(title=f"Sandbox per-job cost, {args.rows:,} rows (medians)")
    for col in ("what", "median ms", "p90 ms", "vs in-process"):
        table.add_column(col, justify="right")
    for name, fig in figures.items():
        table.add_row(
            name, f"{fig['median_ms']:.2f}", f"{fig['p90_ms']:.2f}",
            f"{fig['median_ms'] / base:.2f} x" if "result" not in name else "",
        )  # fmt: skip
    console.print(table)
    console.print(
        f"process boundary overhead per job: {overhead:+.2f} ms; "
        f"10,000-row result transfer: {transfer:+.2f} ms"
    )
    out = write_result(
        "sandbox",
        {
            "rows": args.rows,
            "figures": figures,
            "process_overhead_ms": overhead,
            "result_transfer_ms": transfer,
        },
    )
    console.print(f"written {out}")


if __name__ == "__main__":
    main()
