"""Parameters are data: they never change the SQL text and only reach DuckDB bound."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox import (
    Column,
    CompiledQuery,
    DuckDBEngine,
    ParameterError,
    ParameterSpec,
    ParamType,
    Sensitivity,
    TableSchema,
    TableSource,
    TemplateKind,
    compile_template,
    validate_parameters,
)

DATASET = "market.enterprise_registry"
ATTACKS = [
    "'; DROP TABLE market.enterprise_registry; --",
    "' OR 1=1 --",
    "retail' OR '1'='1",
    "retail'; COPY (SELECT 1) TO '/tmp/pwned.csv'; --",
    "$industry",
    ":industry",
    "\\'",
    '"; SELECT 1; --',
]
# Rows whose value *is* an attack string: matching them proves the string is compared as data.
INDUSTRIES = ["retail"] * 20 + ["' OR 1=1 --"] * 2 + ["$industry"]
SQL = f"SELECT COUNT(*) AS n FROM {DATASET} WHERE industry = :industry"
SPECS = {"industry": ParameterSpec("industry", ParamType.STRING)}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TableSource]:
    path: Path = tmp_path_factory.mktemp("injection") / "registry.parquet"
    pq.write_table(pa.table({"industry": INDUSTRIES}), path)
    yield TableSource(DATASET, "parquet", path)


@pytest.fixture(scope="module")
def query() -> CompiledQuery:
    schema = TableSchema(DATASET, (Column("industry", "VARCHAR", Sensitivity.PUBLIC),))
    return compile_template(SQL, kind=TemplateKind.AGGREGATE, tables={DATASET: schema},
                            parameters=SPECS, count_column="n")  # fmt: skip


def count_for(query: CompiledQuery, source: TableSource, value: str) -> int:
    params = validate_parameters(SPECS, {"industry": value})
    table = DuckDBEngine().run(query, {DATASET: source}, params)
    (count,) = table.rows[0]
    assert isinstance(count, int)
    return count


@pytest.mark.parametrize("attack", ATTACKS)
def test_sql_in_a_string_parameter_is_treated_as_data(
    query: CompiledQuery, source: TableSource, attack: str
) -> None:
    text_before = query.duckdb_sql
    assert count_for(query, source, attack) == INDUSTRIES.count(attack)
    assert query.duckdb_sql == text_before
    assert count_for(query, source, "retail") == 20  # the data is untouched


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=st.one_of(st.sampled_from(ATTACKS + INDUSTRIES), st.text(max_size=40)))
def test_parameter_values_never_change_the_sql_text(
    query: CompiledQuery, source: TableSource, value: str
) -> None:
    """Compilation never sees a value; running binds it and counts exactly its rows."""
    recompiled = compile_template(
        SQL,
        kind=TemplateKind.AGGREGATE,
        tables={
            DATASET: TableSchema(DATASET, (Column("industry", "VARCHAR", Sensitivity.PUBLIC),))
        },
        parameters=SPECS,
        count_column="n",
    )
    assert recompiled == query
    if "\x00" in value:  # NUL is refused by validation and never reaches the engine
        with pytest.raises(ParameterError):
            validate_parameters(SPECS, {"industry": value})
        return
    assert count_for(query, source, value) == INDUSTRIES.count(value)
    assert query.duckdb_sql == "SELECT COUNT(*) AS n FROM market.enterprise_registry " \
        "WHERE industry = $industry"  # fmt: skip
