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
import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from bench.common import summary, timed, write_result
from gateway import home
from gateway.api import create_app
from gateway.auth.issuer import LocalIssuer
from gateway.auth.keys import IssuerKeys
from gateway.demo.server import BackgroundServer
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
    settings = Settings(home=home_dir, database_url=None)
    keys = IssuerKeys.load(settings.keys_dir / home.ISSUER_KEYS)
    issuer = LocalIssuer(keys, issuer=settings.local_issuer, audience=settings.oidc_audience)
    owner = issuer.issue(subject="owner@bench", department="bench", roles=["data_owner"])
    analyst = issuer.issue(subject="analyst@stats", department="stats", roles=["analyst"])
    with BackgroundServer(create_app(settings)) as url, httpx.Client(base_url=url) as http:

        def call(token: str, method: str, path: str, **kw: object) -> httpx.Response:
            r = http.request(
                method,
                path,
                headers={"Authorization": f"Bearer {token}", **kw.pop("headers", {})},
                **kw,
            )  # type: ignore[arg-type]
            r.raise_for_status()
            return r

        yaml = {"Content-Type": "application/yaml"}
        call(owner, "POST", "/v1/datasets", content=DATASET.encode(), headers=yaml)
        t = call(analyst, "POST", "/v1/templates", content=TEMPLATE.encode(), headers=yaml).json()
        call(
            owner,
            "POST",
            "/v1/templates/events-by-district/versions/1/approvals",
            json={"content_hash": t["content_hash"]},
        )

        def one_job() -> None:
            job = call(
                analyst,
                "POST",
                "/v1/jobs",
                json={"template": "events-by-district", "parameters": {"year": 2020}},
            ).json()
            body = call(analyst, "GET", f"/v1/jobs/{job['id']}/result", params={"wait": 120}).json()
            assert body["status"] == "released", body

        return timed(one_job, repeat=repeat)


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
