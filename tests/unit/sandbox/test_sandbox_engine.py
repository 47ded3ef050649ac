"""The locked-down DuckDB engine, on real Parquet/CSV files written in tmp_path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sandbox_testdata import REGISTRY

from sandbox import (
    CompiledQuery,
    DuckDBEngine,
    ExecutionCategory,
    ExecutionError,
    Limits,
    ParameterSpec,
    QueryTimeout,
    ResourceLimitExceeded,
    SandboxBug,
    TableSource,
    TemplateKind,
    TemplateRejected,
    validate_parameters,
)
from sandbox.engines._duckdb_sql import LOCKDOWN
from sandbox.engines.duckdb import _identity, available_settings


def hand_built(sql: str, *, columns: tuple[str, ...] = ("n",)) -> CompiledQuery:
    """A query that did NOT go through compile_template: only DuckDB's own checks remain."""
    return CompiledQuery(
        kind=TemplateKind.LIST,
        source_sql=sql,
        duckdb_sql=sql,
        spark_sql=sql,
        parameters=(),
        tables=(REGISTRY,),
        output_columns=columns,
        count_column=None,
        group_columns=(),
    )


def run_example(
    query: CompiledQuery,
    sources: dict[str, TableSource],
    specs: dict[str, ParameterSpec],
    values: dict[str, object],
) -> dict[str, int]:
    resolved = dict(specs, industry=specs["industry"].resolved(("mining", "retail")))
    params = validate_parameters(resolved, values)
    table = DuckDBEngine().run(query, sources, params)
    assert table.columns == ("district", "enterprises")
    assert table.types == ("VARCHAR", "BIGINT")
    return {str(district): int(str(count)) for district, count in table.rows}


def test_design_example_counts(
    example_query: CompiledQuery,
    sources: dict[str, TableSource],
    example_params: dict[str, ParameterSpec],
) -> None:
    counts = run_example(
        example_query, sources, example_params, {"year": 2024, "industry": "retail"}
    )
    assert counts == {"a": 6, "b": 6, "c": 6}
    counts = run_example(
        example_query, sources, example_params, {"year": 2023, "industry": "retail"}
    )
    assert counts == {"a": 10, "b": 10, "c": 8}
    counts = run_example(
        example_query, sources, example_params, {"year": 2024, "industry": "mining"}
    )
    assert counts == {"a": 2}


def test_every_required_lockdown_setting_exists() -> None:
    assert {name for name, _ in LOCKDOWN} <= available_settings()


def test_reading_another_file_is_blocked_by_duckdb(
    sources: dict[str, TableSource], data_dir: Path
) -> None:
    secret = data_dir / "secret.csv"
    secret.write_text("name,salary\nalice,123456\n")
    query = hand_built(f"SELECT COUNT(*) AS n FROM read_csv('{secret}')")
    with pytest.raises(ExecutionError) as caught:
        DuckDBEngine().run(query, sources, {})
    assert caught.value.category is ExecutionCategory.REFUSED
    assert str(secret) not in str(caught.value)
    assert caught.value.__context__ is None and caught.value.__cause__ is None


@pytest.mark.parametrize(
    "sql",
    [
        "COPY (SELECT 42 AS n) TO '{path}' (FORMAT parquet, USE_TMP_FILE false)",
        "ATTACH '{path}' AS x",
        "SELECT 1 AS n; COPY (SELECT 42 AS n) TO '{path}' (FORMAT parquet)",
        "SET enable_external_access = true",
        "PRAGMA version",
        "CREATE TEMP TABLE enterprise_registry AS SELECT 1 AS n",
        "SELECT * FROM query('COPY (SELECT 42 AS n) TO ''{path}''')",
    ],
)
def test_writes_and_commands_are_refused_even_past_compile(
    sources: dict[str, TableSource], sql: str
) -> None:
    """allowed_paths leaves the data file writable by COPY; the parser check stops it."""
    path = sources[REGISTRY].path
    before = path.read_bytes()
    query = hand_built(sql.format(path=str(path).replace("'", "''")))
    with pytest.raises(ExecutionError) as caught:
        DuckDBEngine().run(query, sources, {})
    assert caught.value.category is ExecutionCategory.REFUSED
    assert path.read_bytes() == before


def test_data_modifying_cte_reported_as_select_still_fails(
    sources: dict[str, TableSource],
) -> None:
    query = hand_built(
        f"WITH d AS (DELETE FROM {REGISTRY} RETURNING *) SELECT COUNT(*) AS n FROM d"
    )
    with pytest.raises(ExecutionError):
        DuckDBEngine().run(query, sources, {})


def test_configuration_is_locked(sources: dict[str, TableSource]) -> None:
    engine = DuckDBEngine()
    mounted = [sources[REGISTRY]]
    _, con = engine._open(mounted, _identity(engine.limits, mounted))  # as a job gets one
    try:
        for statement in (
            "SET enable_external_access = true",
            "SET allowed_paths = ['/etc/passwd']",
            "SET lock_configuration = false",
            "SET threads = 64",
        ):
            with pytest.raises(duckdb.InvalidInputException, match="locked"):
                con.execute(statement)
        assert con.execute("SELECT current_setting('max_temp_directory_size')").fetchone() == (
            "0 bytes",
        )
    finally:
        con.close()


def test_long_query_is_interrupted_by_the_timeout(sources: dict[str, TableSource]) -> None:
    query = hand_built(
        "SELECT SUM(a.range * b.range) AS n FROM range(1000000) AS a, range(1000000) AS b"
    )
    engine = DuckDBEngine(Limits(timeout_s=0.3))
    with pytest.raises(QueryTimeout) as caught:
        engine.run(query, sources, {})
    assert caught.value.category is ExecutionCategory.TIMEOUT
    assert "0.3 s" in str(caught.value)


def test_row_cap_is_enforced(sources: dict[str, TableSource]) -> None:
    query = hand_built(f"SELECT enterprise_id AS n FROM {REGISTRY}")
    with pytest.raises(ResourceLimitExceeded) as caught:
        DuckDBEngine(Limits(max_rows=29)).run(query, sources, {})
    assert caught.value.category is ExecutionCategory.ROW_LIMIT
    assert len(DuckDBEngine(Limits(max_rows=30)).run(query, sources, {}).rows) == 30


def test_byte_cap_is_enforced(sources: dict[str, TableSource]) -> None:
    query = hand_built(f"SELECT enterprise_id AS n FROM {REGISTRY}")
    with pytest.raises(ResourceLimitExceeded) as caught:
        DuckDBEngine(Limits(max_bytes=50)).run(query, sources, {})
    assert caught.value.category is ExecutionCategory.BYTE_LIMIT


@pytest.mark.parametrize(
    ("sql", "category"),
    [
        # cast, overflow and division by zero all come back as one generic "data" failure
        (f"SELECT CAST(enterprise_id AS INTEGER) AS n FROM {REGISTRY}", "data"),
        (
            f"SELECT CAST(LENGTH(enterprise_id) AS INTEGER) * 2147483647 AS n FROM {REGISTRY}",
            "data",
        ),
        (f"SELECT LENGTH(enterprise_id) // 0 AS n FROM {REGISTRY}", "data"),
        (f"SELECT no_such_column AS n FROM {REGISTRY}", "internal"),
    ],
)
def test_errors_carry_a_category_and_no_values_or_paths(
    sources: dict[str, TableSource], sql: str, category: str
) -> None:
    with pytest.raises(ExecutionError) as caught:
        DuckDBEngine().run(hand_built(sql), sources, {})
    message = str(caught.value)
    assert caught.value.category == category
    assert message == f"the query failed while running ({category})"
    for leak in ("E1", "1000", "enterprise_id", str(sources[REGISTRY].path), "tmp"):
        assert leak not in message
    assert caught.value.__context__ is None


def test_missing_source_file_is_reported_without_its_path(
    example_query: CompiledQuery, sources: dict[str, TableSource]
) -> None:
    gone = dataclasses.replace(sources[REGISTRY], path=sources[REGISTRY].path.parent / "gone.pq")
    with pytest.raises(ExecutionError) as caught:
        DuckDBEngine().run(example_query, {**sources, REGISTRY: gone},
                           {"industry": "retail", "year": 2024})  # fmt: skip
    assert caught.value.category is ExecutionCategory.SOURCE_UNAVAILABLE
    assert "gone" not in str(caught.value)


def test_only_the_querys_sources_are_mounted(
    sources: dict[str, TableSource],
) -> None:
    query = hand_built("SELECT COUNT(*) AS n FROM tax.filings")
    with pytest.raises(ExecutionError):  # tax.filings is not among query.tables
        DuckDBEngine().run(query, sources, {})


def test_run_requires_validated_parameters(
    example_query: CompiledQuery, sources: dict[str, TableSource]
) -> None:
    with pytest.raises(SandboxBug):
        DuckDBEngine().run(example_query, sources, {"industry": "retail"})
    with pytest.raises(SandboxBug):
        DuckDBEngine().run(example_query, sources, {"industry": "retail", "year": [2024]})


def test_csv_source(data_dir: Path) -> None:
    path = data_dir / "people.csv"
    path.write_text('id,town\n1,"Oak, North"\n2,Elm\n3,Elm\n')
    source = TableSource("civil.people", "csv", path)
    engine = DuckDBEngine()
    assert engine.infer_schema(source) == (("id", "BIGINT"), ("town", "VARCHAR"))
    assert engine.distinct_values(source, "town") == ("Elm", "Oak, North")


def test_distinct_values_and_schema(sources: dict[str, TableSource]) -> None:
    engine = DuckDBEngine()
    registry = sources[REGISTRY]
    assert engine.distinct_values(registry, "industry") == ("mining", "retail")
    assert engine.infer_schema(registry)[0] == ("enterprise_id", "VARCHAR")
    with pytest.raises(TemplateRejected, match="more than 2 distinct values"):
        engine.distinct_values(registry, "district", limit=2)
    with pytest.raises(TemplateRejected, match="strings or integers"):
        engine.distinct_values(registry, "registered_capital")
    with pytest.raises(SandboxBug):
        engine.distinct_values(registry, 'x" FROM y --')


def test_result_values_are_json_friendly(data_dir: Path) -> None:
    path = data_dir / "values.parquet"
    pq.write_table(pa.table({"k": [1]}), path)
    source = TableSource("dept.values_t", "parquet", path)
    columns = ("d", "dt", "b", "f", "l")
    sql = (
        "SELECT CAST(1.50 AS DECIMAL(5, 2)) AS d, DATE '2024-01-31' AS dt, k > 0 AS b, "
        "CAST('inf' AS DOUBLE) AS f, [k, k] AS l FROM dept.values_t"
    )
    query = dataclasses.replace(hand_built(sql, columns=columns), tables=("dept.values_t",))
    table = DuckDBEngine().run(query, {"dept.values_t": source}, {})
    assert table.rows == (("1.50", "2024-01-31", True, "Infinity", [1, 1]),)


@pytest.mark.parametrize(
    "path",
    [Path("relative.parquet"), Path("/data/*.parquet"), Path("/data/a?.csv"), Path("/x/\n.pq")],
)
def test_table_source_refuses_unsafe_paths(path: Path) -> None:
    with pytest.raises(SandboxBug):
        TableSource("market.x", "parquet", path)


def test_limits_are_validated() -> None:
    with pytest.raises(SandboxBug, match="memory_limit"):
        Limits(memory_limit="2GB'; SET x=1")
    with pytest.raises(SandboxBug, match="timeout_s"):
        Limits(timeout_s=0)
