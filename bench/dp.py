"""DP grouped count and mean at ε = 1: insitu end to end vs OpenDP's Context vs SmartNoise SQL.

Same Parquet file for everyone: one row per person (person_id), 16 districts, income in
[0, 100000). insitu runs `dp` templates over HTTP (token, policy, ledger reservation, job row,
audit, locked-down DuckDB running the bounded plan, OpenDP noise, release with the ledger
commit). The peers run in their own virtualenvs (`make peers-dp`) as subprocesses; a peer
whose virtualenv is missing is reported as skipped, with the reason. Printed per query: the
median time and the mean absolute error over districts and repeats, against the exact answer.

`python -m bench dp` runs 1M rows; `python -m bench.dp --rows 10000000` the 10M-row case.
Goals (issue 6): insitu ≤ 1.5 × the raw DuckDB aggregate, ≥ 20 × faster than the Context and
SmartNoise SQL at 10M rows, and error no worse than either at the same ε.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from bench.common import served, summary, timed, write_result
from gateway import home
from gateway.settings import Settings
from sandbox.dp.snapshot import SETTLE_NS

ROOT = Path(__file__).resolve().parents[1]
PEERS = {
    "opendp_context": (ROOT / ".venv-peers/opendp/bin/python", ROOT / "peers/dp/opendp_context.py"),
    "smartnoise_sql": (
        ROOT / ".venv-peers/smartnoise/bin/python",
        ROOT / "peers/dp/smartnoise_sql.py",
    ),
}
DISTRICTS = np.array([f"district_{i:02d}" for i in range(16)])
EXACT_SQL = {
    "count": "SELECT district, COUNT(*) FROM read_parquet($p) GROUP BY district",
    "mean": "SELECT district, AVG(income) FROM read_parquet($p) GROUP BY district",
}
DATASET = """\
id: bench.people
title: Benchmark people
provider: bench
source: {format: parquet, path: data/bench/people.parquet}
share_class: none
classification: important
privacy_unit: person_id
columns:
  - {name: person_id, type: VARCHAR, sensitivity: identifier}
  - {name: district, type: VARCHAR, sensitivity: public, values: [@DISTRICTS@]}
  - {name: income, type: BIGINT, sensitivity: sensitive}
privacy:
  budget: {rho_per_department: 1000, rho_total: 1000, refresh: never}
"""
DATASET = DATASET.replace("@DISTRICTS@", ", ".join(str(d) for d in DISTRICTS))
MEASURE = {
    "count": "{name: value, kind: count}",
    "mean": "{name: value, kind: mean, column: income, lower: 0, upper: 100000}",
}


def template(query: str) -> str:
    return f"""\
id: people-{query}
version: 1
kind: dp
title: DP {query} by district
datasets: [bench.people]
dp:
  bounds: {{rows_per_unit: 1}}
  group_by: {{columns: [district], keys: public}}
  measures: [{MEASURE[query]}]
  cost: {{epsilon: 1}}
"""


def write_people(path: Path, rows: int) -> None:
    rng = np.random.default_rng(11)
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = np.char.add("p", rng.permutation(rows).astype(str))
    pq.write_table(
        pa.table(
            {
                "person_id": ids,
                "district": rng.choice(DISTRICTS, size=rows),
                "income": rng.integers(0, 100_000, size=rows).astype(np.int64),
            }
        ),
        path,
        row_group_size=1_000_000,
    )


def exact(path: Path, query: str) -> dict[str, float]:
    with duckdb.connect() as con:
        rows = con.execute(EXACT_SQL[query], {"p": str(path)}).fetchall()
    return {str(d): float(v) for d, v in rows}


def raw_duckdb(path: Path, query: str, repeat: int) -> list[float]:
    con = duckdb.connect()
    samples = timed(
        lambda: con.execute(EXACT_SQL[query], {"p": str(path)}).fetchall(), repeat=repeat
    )
    con.close()
    return samples


def mae(released: list[dict[str, Any]], truth: dict[str, float]) -> float:
    errors = [abs(float(r.get(k, 0.0) or 0.0) - v) for r in released for k, v in truth.items()]
    return statistics.mean(errors)


def insitu(
    home_dir: Path, query: str, repeat: int
) -> tuple[list[float], float, list[dict[str, Any]]]:
    released: list[dict[str, Any]] = []
    with served(home_dir) as gw:
        gw.register(DATASET, template(query))  # the dataset is already there for the second

        def one_job() -> None:
            body = gw.job({"template": f"people-{query}"}, wait_s=300)
            released.append({row[0]: row[1] for row in body["rows"]})

        first = timed(one_job, repeat=1, warmup=0)  # measures the snapshot when it is new
        samples = timed(one_job, repeat=repeat, warmup=1)
    return samples, first[0], released[-repeat:]


def peer(name: str, data: Path, query: str, rows: int, repeat: int) -> dict[str, Any]:
    python, script = PEERS[name]
    if not python.exists():
        return {"skipped": f"{python.relative_to(ROOT)} is missing: run `make peers-dp`"}
    done = subprocess.run(
        [
            str(python),
            str(script),
            "--data",
            str(data),
            "--query",
            query,
            "--rows",
            str(rows),
            "--repeat",
            str(repeat),
            "--epsilon",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if done.returncode != 0:
        return {"skipped": f"{name} failed: {done.stderr.strip().splitlines()[-1:]}"}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def run(rows: int, *, peers: bool = True) -> dict[str, Any]:
    repeat = 10 if rows <= 1_000_000 else 5
    peer_repeat = 3
    out: dict[str, Any] = {"rows": rows, "epsilon": 1.0, "queries": {}}
    with tempfile.TemporaryDirectory(prefix="insitu-bench-dp-") as tmp:
        home_dir = Path(tmp) / "home"
        settings = Settings(home=home_dir, database_url=None)
        home.init_home(settings)
        data = settings.data_dir / "bench" / "people.parquet"
        write_people(data, rows)
        # A snapshot is measured only once its ctime is SETTLE_NS old (sandbox/dp/snapshot.py):
        # a real source is written long before it is queried; this one seconds before.
        time.sleep(SETTLE_NS / 1e9)
        for query in ("count", "mean"):
            truth = exact(data, query)
            raw = summary(raw_duckdb(data, query, repeat))
            samples, first, released = insitu(home_dir, query, repeat)
            entry: dict[str, Any] = {
                "raw_duckdb": raw,
                "insitu": {
                    **summary(samples),
                    "first_ms": first * 1000,
                    "mae": mae(released, truth),
                },
            }
            for name in PEERS if peers else ():
                result = peer(name, data, query, rows, peer_repeat)
                if "skipped" in result:
                    entry[name] = result
                    continue
                entry[name] = {
                    **summary(result["query_s"]),
                    "setup_ms": result["setup_s"] * 1000,
                    "mae": mae(result["released"], truth),
                }
            out["queries"][query] = entry
    return out


def show(result: dict[str, Any], console: Console) -> None:
    rows = result["rows"]
    table = Table(title=f"DP grouped queries at ε = 1, {rows:,} rows (medians; MAE vs exact)")
    for col in ("query", "system", "ms", "× raw DuckDB", "insitu speed-up", "MAE"):
        table.add_column(col, justify="right")
    for query, entry in result["queries"].items():
        raw = entry["raw_duckdb"]["median_ms"]
        ours = entry["insitu"]["median_ms"]
        table.add_row(query, "raw DuckDB (exact)", f"{raw:.1f}", "1.00", "", "0")
        for name in ("insitu", *PEERS):
            e = entry.get(name, {"skipped": "--no-peers"})
            if "skipped" in e:
                table.add_row(query, name, "skipped", "", "", e["skipped"])
                continue
            ms = e["median_ms"]
            extra = f" (+{e['setup_ms']:.0f} load)" if e.get("setup_ms") else ""
            if e.get("first_ms"):
                extra = f" (first {e['first_ms']:.0f})"
            speed = "" if name == "insitu" else f"{ms / ours:.1f} ×"
            table.add_row(
                query, name, f"{ms:.1f}{extra}", f"{ms / raw:.2f}", speed, f"{e['mae']:.2f}"
            )
    console.print(table)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.dp")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--no-peers", action="store_true", help="insitu and raw DuckDB only")
    args = ap.parse_args(argv if argv is not None else [])
    console = Console()
    result = run(args.rows, peers=not args.no_peers)
    show(result, console)
    name = "dp" if args.rows == 1_000_000 else f"dp-{args.rows}"
    console.print(f"written {write_result(name, result)}")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
