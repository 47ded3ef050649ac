"""End-to-end job over HTTP vs the same SQL run directly in DuckDB, on the same Parquet file.

Both sides run the same grouped aggregate with the same bound parameter; the gateway adds token
checks, policy, parameter validation, the job row and audit entries, a fresh locked-down DuckDB
connection, disclosure control, the result row and the receipt. Targets (issue 2): at 100k rows
at most +10 ms at the median; at 10M rows at most 1.10 x raw DuckDB. The table times a job as
two calls (the POST, then `GET …/result?wait=`), as the figures since issue 2 were; the line
under it the same job in one call (`POST /v1/jobs?wait=`, the synchronous fast path).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from bench.common import served, summary, timed, write_result
from gateway import home, timing
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


def gateway_jobs(home_dir: Path, repeat: int, *, profile: bool = False) -> dict[str, Any]:
    """Time `repeat` jobs; with `profile`, then `repeat` more with the stage timers on."""
    with served(home_dir) as gw:
        gw.register(DATASET, TEMPLATE)
        submission = {"template": "events-by-district", "parameters": {"year": 2020}}
        out: dict[str, Any] = {"samples": timed(lambda: gw.job(submission), repeat=repeat)}
        out["one_call"] = timed(lambda: gw.job(submission, one_call=True), repeat=repeat)
        if profile:
            timing.RECORDER.enable()
            try:
                ends = timed(lambda: gw.job(submission), repeat=repeat, warmup=0)
                out["profile"] = stage_profile(timing.RECORDER.samples(), ends)
            finally:
                timing.RECORDER.disable()
        return out


def stage_profile(samples: dict[str, list[float]], ends: list[float]) -> dict[str, float]:
    """Median ms per stage of one job on its critical path; HTTP is what the stages leave.

    Submission's admission is its use case less its transaction; the queue stage counts from
    the job row's creation, so its `store:submit` part is taken off. Two requests verify a
    token each (submit, result).
    """

    def ms(name: str) -> float:
        values = samples.get(name, [])
        return statistics.median(values) * 1000 if values else 0.0

    end_to_end = statistics.median(ends) * 1000
    stages = {
        "token": 2 * ms("token"),
        "admission": ms("submit") - ms("store:submit") + ms("admission"),
        "store": ms("store:submit") + ms("store:release"),
        "queue": max(0.0, ms("queue") - ms("store:submit")),
        "sandbox": ms("sandbox"),
        "disclosure": ms("disclosure"),
        "audit": ms("audit"),
        "receipt": ms("receipt"),
    }
    return {"HTTP": max(0.0, end_to_end - sum(stages.values())), **stages, "total": end_to_end}


def print_profile(
    console: Console,
    profile: dict[str, float],
    title: str = "Where one small aggregate job's time goes (100k rows, medians)",
) -> None:
    table = Table(title=title)
    table.add_column("stage")
    table.add_column("ms", justify="right")
    table.add_column("share", justify="right")
    for name, value in profile.items():
        share = value / profile["total"] if profile["total"] else 0.0
        table.add_row(name, f"{value:.2f}", f"{share:.0%}")
    console.print(table)


def main(argv: list[str] | None = None) -> None:
    """`--quick`: 100k rows only (the stage profile, no 10M-row file)."""
    quick = "--quick" in (sys.argv[1:] if argv is None else argv)
    console = Console()
    rows_out = []
    profile: dict[str, float] = {}
    for size in SIZES[:1] if quick else SIZES:
        repeat = 30 if size <= 1_000_000 else 10
        with tempfile.TemporaryDirectory(prefix="insitu-bench-") as tmp:
            home_dir = Path(tmp) / "home"
            settings = Settings(home=home_dir, database_url=None)
            home.init_home(settings)
            data = settings.data_dir / "bench" / "events.parquet"
            write_events(data, size)
            raw = summary(raw_duckdb(data, repeat))
            measured = gateway_jobs(home_dir, repeat, profile=size <= 100_000)
            gw = summary(measured["samples"])
            one_call = summary(measured["one_call"])
        if "profile" in measured:
            profile = measured["profile"]
        rows_out.append(
            {
                "rows": size,
                "raw_duckdb": raw,
                "gateway": gw,
                "overhead_ms": gw["median_ms"] - raw["median_ms"],
                "ratio": gw["median_ms"] / raw["median_ms"],
                "gateway_one_call": one_call,
                "one_call_overhead_ms": one_call["median_ms"] - raw["median_ms"],
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
    for r in rows_out:
        console.print(
            f"{r['rows']:,} rows in one call (POST /v1/jobs?wait=): "
            f"{r['gateway_one_call']['median_ms']:.2f} ms ({r['one_call_overhead_ms']:+.2f} ms)"
        )
    print_profile(console, profile)
    path = write_result("e2e", {"sizes": rows_out, "profile_ms": profile})
    console.print(f"written {path}")
