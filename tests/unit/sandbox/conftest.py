"""Fixtures for the sandbox tests: the DESIGN.md §8 catalogue, template and real Parquet data.

The registry has 30 enterprises in three districts (a: 12, b: 10, c: 8), all in industry
'retail' except the last two of district a ('mining'). Every third enterprise filed in 2024.
Retail enterprises without a filing: in 2024 a = 6, b = 6, c = 6; in 2023 a = 10, b = 10, c = 8.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sandbox_testdata import EXAMPLE_SQL, FILINGS, REGISTRY

from sandbox import (
    Column,
    CompiledQuery,
    ParameterSpec,
    Sensitivity,
    TableSchema,
    TableSource,
    TemplateKind,
    compile_template,
)


@pytest.fixture
def tables() -> dict[str, TableSchema]:
    return {
        REGISTRY: TableSchema(
            REGISTRY,
            (
                Column("enterprise_id", "VARCHAR", Sensitivity.IDENTIFIER),
                Column("district", "VARCHAR", Sensitivity.PUBLIC),
                Column("industry", "VARCHAR", Sensitivity.PUBLIC),
                Column("registered_capital", "DOUBLE", Sensitivity.SENSITIVE),
            ),
        ),
        FILINGS: TableSchema(
            FILINGS,
            (
                Column("enterprise_id", "VARCHAR", Sensitivity.IDENTIFIER),
                Column("year", "INTEGER", Sensitivity.PUBLIC),
            ),
        ),
    }


@pytest.fixture
def example_params() -> dict[str, ParameterSpec]:
    return {
        "year": ParameterSpec.from_mapping("year", {"type": "integer", "min": 2015, "max": 2030}),
        "industry": ParameterSpec.from_mapping(
            "industry", {"type": "string", "values_from": "market.enterprise_registry.industry"}
        ),
    }


@pytest.fixture
def example_query(
    tables: dict[str, TableSchema], example_params: dict[str, ParameterSpec]
) -> CompiledQuery:
    return compile_template(
        EXAMPLE_SQL,
        kind=TemplateKind.AGGREGATE,
        tables=tables,
        parameters=example_params,
        count_column="enterprises",
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    directory.mkdir()
    return directory


@pytest.fixture
def sources(data_dir: Path) -> dict[str, TableSource]:
    districts = ["a"] * 12 + ["b"] * 10 + ["c"] * 8
    industries = ["retail"] * 30
    industries[10] = industries[11] = "mining"
    registry = pa.table(
        {
            "enterprise_id": [f"E{i}" for i in range(30)],
            "district": districts,
            "industry": industries,
            "registered_capital": [float(1000 + i) for i in range(30)],
        }
    )
    filings = pa.table({"enterprise_id": [f"E{i}" for i in range(0, 30, 3)], "year": [2024] * 10})
    # A quote in the file name proves paths are quoted as literals, not spliced raw.
    registry_path = data_dir / "enterprise_o'registry.parquet"
    filings_path = data_dir / "filings.parquet"
    pq.write_table(registry, registry_path)
    pq.write_table(filings, filings_path)
    return {
        REGISTRY: TableSource(REGISTRY, "parquet", registry_path),
        FILINGS: TableSource(FILINGS, "parquet", filings_path),
    }
