"""Verification (核验) jobs over HTTP vs the same compiled SQL run directly in DuckDB.

Both sides answer "is each of these n keys a resident of the district?" with the query the
sandbox compiles (one bound parameter per key, an EXISTS per key, the keys repeated as an IN
list). The gateway adds the token, policy, key validation and fingerprints, the daily quota
reservation, the job row and audit entries, a locked-down DuckDB connection, the sweep check
and the receipt. Two gateway runs: with sorted copies turned off (every job scans the
Parquet file) and with the dataset's sorted copy made (`gateway.catalogue.sorted_copies`: a
key reads one row group); raw DuckDB on the file and on the same copy beside them.

    python -m bench verify [--rows=N]     (default 1,000,000; the issue's goal is at 10M)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from bench.common import served, summary, timed, write_result
from bench.e2e import print_profile, stage_profile
from gateway import home, timing
from gateway.catalogue.documents import DatasetSpec, TemplateSpec, parse_document
from gateway.catalogue.templates import compile_spec
from gateway.settings import Settings

ROWS = 1_000_000
KEY_COUNTS = (1, 10, 100)
REPEAT = 20
COPY_WAIT_S = 900  # the sorted copy of 10M rows takes ~6 s on two cores
DATASET = """\
id: bench.people
title: Benchmark people
provider: bench
source: {format: parquet, path: data/bench/people.parquet}
share_class: none
classification: important
columns:
  - {name: person_id, type: VARCHAR, sensitivity: identifier}
  - {name: district, type: VARCHAR, sensitivity: public}
verify:
  max_keys_per_request: 1000
  max_keys_per_day: 1000000
  sweep_min_keys: 1000000
  # `bench load` asks the same keys in each of the 8 districts: a throughput test, not the
  # locator the default of 3 parameter sets a key refuses (tests/adversarial cover that)
  max_parameter_sets_per_key: 8
"""
TEMPLATE = """\
id: bench-resident
version: 1
kind: verify
title: Resident of a district?
datasets: [bench.people]
parameters:
  district: {type: string, values: [d00, d01, d02, d03, d04, d05, d06, d07]}
verify:
  key: {name: person_id, pattern: "P[0-9]{9}", max_length: 10}
sql: SELECT 1 FROM bench.people AS p WHERE p.person_id = :person_id AND p.district = :district
"""


def write_people(path: Path, rows: int) -> list[str]:
    rng = np.random.default_rng(11)
    ids = np.char.add("P", np.char.zfill(np.arange(rows).astype(str), 9))
    districts = np.array([f"d{i:02d}" for i in range(8)])
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"person_id": ids, "district": rng.choice(districts, rows)}), path)
    return [str(k) for k in rng.choice(ids, size=max(KEY_COUNTS), replace=False)]


def raw_duckdb(setup: str, keys: list[str]) -> list[float]:
    """The compiled query run directly in DuckDB after `setup` (which makes `bench.people`)."""
    dataset = parse_document(DATASET, DatasetSpec)
    query = compile_spec(
        parse_document(TEMPLATE, TemplateSpec), {dataset.id: dataset}, verify_slots=len(keys)
    )
    con = duckdb.connect()
    con.execute(setup)
    params: dict[str, object] = {
        "district": "d03",
        **dict(zip(query.key_parameters, keys, strict=True)),
    }
    samples = timed(lambda: con.execute(query.duckdb_sql, params).fetchall(), repeat=REPEAT)
    con.close()
    return samples


def gateway_jobs(
    home_dir: Path, key_sets: list[list[str]], *, copy: bool, profile: dict[str, float]
) -> list[list[float]]:
    """Verify jobs over HTTP; with `copy`, first wait for the sorted copy of the file (asked
    for by the first job, made in the background), else with copies turned off (run first:
    it registers the dataset and template). With `copy`, `profile` is filled with the stage
    profile of one-key jobs (`REPEAT` more, the stage timers on)."""
    os.environ["INSITU_VERIFY_SORTED_COPY_MIN_BYTES"] = "0" if copy else "-1"
    out = []
    try:
        with served(home_dir) as gw:
            if not copy:
                gw.register(DATASET, TEMPLATE)
            submissions = [
                {"template": "bench-resident", "parameters": {"district": "d03", "person_id": ks}}
                for ks in key_sets
            ]
            if copy:
                gw.job(submissions[0])
                copies = Settings(home=home_dir).sorted_copies_dir
                deadline = time.monotonic() + COPY_WAIT_S
                while not list(copies.glob("*.duckdb")) and time.monotonic() < deadline:
                    time.sleep(0.2)
                if not list(copies.glob("*.duckdb")):
                    raise SystemExit("the sorted copy was not made in time")
            for submission in submissions:
                out.append(timed(lambda s=submission: gw.job(s), repeat=REPEAT))
            if copy:
                timing.RECORDER.enable()
                try:
                    ends = timed(lambda: gw.job(submissions[0]), repeat=REPEAT, warmup=0)
                    profile.update(stage_profile(timing.RECORDER.samples(), ends))
                finally:
                    timing.RECORDER.disable()
    finally:
        del os.environ["INSITU_VERIFY_SORTED_COPY_MIN_BYTES"]
    return out


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    rows = next((int(a.split("=", 1)[1]) for a in argv if a.startswith("--rows=")), ROWS)
    console = Console()
    rows_out = []
    with tempfile.TemporaryDirectory(prefix="insitu-bench-") as tmp:
        home_dir = Path(tmp) / "home"
        settings = Settings(home=home_dir, database_url=None)
        home.init_home(settings)
        data = settings.data_dir / "bench" / "people.parquet"
        sample = write_people(data, rows)
        key_sets = [sample[:n] for n in KEY_COUNTS]
        on_file = f"CREATE SCHEMA bench; CREATE VIEW bench.people AS SELECT * FROM '{data}'"
        raws = [summary(raw_duckdb(on_file, ks)) for ks in key_sets]
        profile: dict[str, float] = {}
        scans = [summary(s) for s in gateway_jobs(home_dir, key_sets, copy=False, profile={})]
        looked = [summary(s) for s in gateway_jobs(home_dir, key_sets, copy=True, profile=profile)]
        (copy,) = settings.sorted_copies_dir.glob("*.duckdb")
        on_copy = (
            f"ATTACH '{copy}' AS sorted_copy (READ_ONLY); CREATE SCHEMA bench; "
            "CREATE VIEW bench.people AS SELECT * FROM sorted_copy.rows"
        )
        raw_sorted = [summary(raw_duckdb(on_copy, ks)) for ks in key_sets]
    for n, raw, scan, raw_copy, gw in zip(KEY_COUNTS, raws, scans, raw_sorted, looked, strict=True):
        rows_out.append(
            {
                "keys": n,
                "raw_duckdb": raw,
                "gateway_scan": scan,
                "raw_duckdb_sorted_copy": raw_copy,
                "gateway": gw,
                "overhead_ms": gw["median_ms"] - raw_copy["median_ms"],
                "ratio_to_raw_file": gw["median_ms"] / raw["median_ms"],
            }
        )
    table = Table(title=f"Verification job over HTTP vs raw DuckDB, {rows:,} rows (medians, ms)")
    columns = (
        "keys",
        "raw DuckDB, file",
        "gateway, file scan",
        "raw DuckDB, sorted copy",
        "gateway, sorted copy",
        "gateway − raw (copy)",
    )
    for col in columns:
        table.add_column(col, justify="right")
    for r in rows_out:
        table.add_row(
            str(r["keys"]),
            f"{r['raw_duckdb']['median_ms']:.2f}",
            f"{r['gateway_scan']['median_ms']:.2f}",
            f"{r['raw_duckdb_sorted_copy']['median_ms']:.2f}",
            f"{r['gateway']['median_ms']:.2f}",
            f"{r['overhead_ms']:+.2f}",
        )
    console.print(table)
    print_profile(
        console,
        profile,
        title=f"Where one verify key's time goes ({rows:,} rows, sorted copy, medians)",
    )
    path = write_result("verify", {"rows": rows, "key_counts": rows_out, "profile_1_key": profile})
    console.print(f"written {path}")
