"""Shared helpers of the sandbox attack tests: a data file and hand-built queries.

Hand-built CompiledQuery objects skip the template compiler on purpose: these tests check
the layers behind it (the engine's statement check, DuckDB's lock-down, the worker
process's OS limits), as if a statement had got past sqlglot.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from sandbox import CompiledQuery, TableSource, TemplateKind

DATASET = "market.registry"


def write_registry(directory: Path) -> dict[str, TableSource]:
    path = directory / "registry.parquet"
    pq.write_table(
        pa.table(
            {
                "enterprise_id": [f"E{i}" for i in range(40)],
                "district": ["a", "b"] * 20,
                "capital": [float(1000 + i) for i in range(40)],
            }
        ),
        path,
    )
    return {DATASET: TableSource(DATASET, "parquet", path)}


def hand_built(sql: str, *, output: str = "n") -> CompiledQuery:
    return CompiledQuery(
        kind=TemplateKind.AGGREGATE,
        source_sql=sql,
        duckdb_sql=sql,
        spark_sql=sql,
        parameters=(),
        tables=(DATASET,),
        output_columns=(output,),
        count_column=None,
        group_columns=(),
    )


COUNT = hand_built(f"SELECT COUNT(*) AS n FROM {DATASET}")
SLOW = hand_built(
    "SELECT SUM(a.range * b.range) AS n FROM range(100000000) AS a, range(100000000) AS b"
)
