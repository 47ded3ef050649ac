"""Verification (核验) jobs over HTTP vs the same compiled SQL run directly in DuckDB.

Both sides answer "is each of these n keys a resident of the district?" with the query the
sandbox compiles (one bound parameter per key, an EXISTS per key). The gateway adds the token,
policy, key validation and fingerprints, the daily quota reservation, the job row and audit
entries, a fresh locked-down DuckDB connection, the sweep check and the receipt.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from bench.common import served, summary, timed, write_result
from gateway import home
from gateway.catalogue.documents import DatasetSpec, TemplateSpec, parse_document
from gateway.catalogue.templates import compile_spec
from gateway.settings import Settings

ROWS = 1_000_000
KEY_COUNTS = (1, 10, 100)
REPEAT = 20
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


def raw_duckdb(path: Path, keys: list[str]) -> list[float]:
    dataset = parse_document(DATASET, DatasetSpec)
    query = compile_spec(
        parse_document(TEMPLATE, TemplateSpec), {dataset.id: dataset}, verify_slots=len(keys)
    )
    con = duckdb.connect()
    con.execute(
        f"CREATE SCHEMA bench; CREATE VIEW bench.people AS SELECT * FROM read_parquet('{path}')"
    )
    params: dict[str, object] = {
        "district": "d03",
        **dict(zip(query.key_parameters, keys, strict=True)),
    }
    samples = timed(lambda: con.execute(query.duckdb_sql, params).fetchall(), repeat=REPEAT)
    con.close()
    return samples


def gateway_jobs(home_dir: Path, key_sets: list[list[str]]) -> list[list[float]]:
    out = []
    with served(home_dir) as gw:
        gw.register(DATASET, TEMPLATE)
        for key_set in key_sets:
            submission = {
                "template": "bench-resident",
                "parameters": {"district": "d03", "person_id": key_set},
            }
            out.append(timed(lambda s=submission: gw.job(s), repeat=REPEAT))
    return out


def main() -> None:
    console = Console()
    rows_out = []
    with tempfile.TemporaryDirectory(prefix="insitu-bench-") as tmp:
        home_dir = Path(tmp) / "home"
        settings = Settings(home=home_dir, database_url=None)
        home.init_home(settings)
        data = settings.data_dir / "bench" / "people.parquet"
        sample = write_people(data, ROWS)
        key_sets = [sample[:n] for n in KEY_COUNTS]
        raws = [summary(raw_duckdb(data, ks)) for ks in key_sets]
        gws = [summary(s) for s in gateway_jobs(home_dir, key_sets)]
    for n, raw, gw in zip(KEY_COUNTS, raws, gws, strict=True):
        rows_out.append(
            {
                "keys": n,
                "raw_duckdb": raw,
                "gateway": gw,
                "overhead_ms": gw["median_ms"] - raw["median_ms"],
                "ratio": gw["median_ms"] / raw["median_ms"],
            }
        )
    table = Table(title=f"Verification job over HTTP vs raw DuckDB, {ROWS:,} rows (medians)")
    for col in ("keys", "raw DuckDB ms", "gateway ms", "overhead ms", "ratio"):
        table.add_column(col, justify="right")
    for r in rows_out:
        table.add_row(
            str(r["keys"]),
            f"{r['raw_duckdb']['median_ms']:.2f}",
            f"{r['gateway']['median_ms']:.2f}",
            f"{r['overhead_ms']:+.2f}",
            f"{r['ratio']:.2f}",
        )
    console.print(table)
    path = write_result("verify", {"rows": ROWS, "key_counts": rows_out})
    console.print(f"written {path}")
