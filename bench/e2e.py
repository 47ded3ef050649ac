"""End-to-end job over HTTP vs the same SQL run directly in DuckDB, on the same Parquet file.

Both sides run the same grouped aggregate with the same bound parameter; the gateway adds token
checks, policy, parameter validation, the job row and audit entries, a fresh locked-down DuckDB
connection, disclosure control, the result row and the receipt. Targets (issue 2): at 100k rows
at most +10 ms at the median; at 10M rows at most 1.10 x raw DuckDB.
"""

from __future__ import annotations

import tempfile
import textwrap
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from bench.common import served, summary, timed, write_result
from gateway import home
from gateway.settings import Settings

SIZES = (100_000, 10_000_000)
DISTRICTS = np.array([f"district_{i:02d}" for i in range(16)])
SQL = """
SELECT e.district, COUNT(*) AS events, SUM(e.amount) AS amount
FROM bench.events AS e
WHERE e.year = :year
GROUP BY e.district
"""
DATASET = """\
id: bench.events
title: Benchmark events
provider: bench
source: {format: parquet, path: data/bench/events.parquet}
share_class: unconditional
classification: general
columns:
  - {name: event_id, type: BIGINT, sensitivity: identifier}
  - {name: district, type: VARCHAR, sensitivity: public}
  - {name: year, type: INTEGER, sensitivity: public}
  - {name: amount, type: BIGINT, sensitivity: sensitive}
"""
TEMPLATE = f"""\
id: events-by-district
version: 1
kind: aggregate
title: Events by district in a year
datasets: [bench.events]
parameters:
  year: {{type: integer, min: 2000, max: 2030}}
sql: |
{textwrap.indent(SQL.strip(), "  ")}
output: {{count_column: events}}
"""


def write_events(path: Path, rows: int) -> None:
    rng = np.random.default_rng(7)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table(
            {
                "event_id": np.arange(rows, dtype=np.int64),
                "district": rng.choice(DISTRICTS, size=rows),
                "year": rng.integers(2015, 2026, size=rows).astype(np.int32),
                "amount": rng.integers(0, 1_000_000, size=rows).astype(np.int64),
            }
        ),
        path,
        row_group_size=1_000_000,
    )


def raw_duckdb(path: Path, repeat: int) -> list[float]:
    con = duckdb.connect()
    con.execute(
        f"CREATE SCHEMA bench; CREATE VIEW bench.events AS SELECT * FROM read_parquet('{path}')"
    )
    sql = SQL.replace(":year", "$year")
    samples = timed(lambda: con.execute(sql, {"year": 2020}).fetchall(), repeat=repeat)
    con.close()
    return samples


def gateway_jobs(home_dir: Path, repeat: int) -> list[float]:
    with served(home_dir) as gw:
        gw.register(DATASET, TEMPLATE)
        submission = {"template": "events-by-district", "parameters": {"year": 2020}}
        return timed(lambda: gw.job(submission), repeat=repeat)


def main() -> None:
    console = Console()
    rows_out = []
    for size in SIZES:
        repeat = 30 if size <= 1_000_000 else 10
        with tempfile.TemporaryDirectory(prefix="insitu-bench-") as tmp:
            home_dir = Path(tmp) / "home"
            settings = Settings(home=home_dir, database_url=None)
            home.init_home(settings)
            data = settings.data_dir / "bench" / "events.parquet"
            write_events(data, size)
            raw = summary(raw_duckdb(data, repeat))
            gw = summary(gateway_jobs(home_dir, repeat))
        rows_out.append(
            {
                "rows": size,
                "raw_duckdb": raw,
                "gateway": gw,
                "overhead_ms": gw["median_ms"] - raw["median_ms"],
                "ratio": gw["median_ms"] / raw["median_ms"],
            }
        )
    table = Table(title="End-to-end job over HTTP vs raw DuckDB (medians)")
    for col in ("rows", "raw DuckDB ms", "gateway ms", "overhead ms", "ratio", "target"):
        table.add_column(col, justify="right")
    for r in rows_out:
        target = "≤ +10 ms" if r["rows"] <= 100_000 else "≤ 1.10 x"
        met = (r["overhead_ms"] <= 10) if r["rows"] <= 100_000 else (r["ratio"] <= 1.10)
        table.add_row(
            f"{r['rows']:,}",
            f"{r['raw_duckdb']['median_ms']:.2f}",
            f"{r['gateway']['median_ms']:.2f}",
            f"{r['overhead_ms']:+.2f}",
            f"{r['ratio']:.3f}",
            f"{target} {'met' if met else 'NOT met'}",
        )
    console.print(table)
    path = write_result("e2e", {"sizes": rows_out})
    console.print(f"written {path}")
