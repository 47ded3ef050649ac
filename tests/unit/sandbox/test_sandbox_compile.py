"""Static template checks: every refused construct, and the DESIGN.md §8 example."""

from __future__ import annotations

import pytest
from sandbox_testdata import EXAMPLE_SQL, FILINGS, REGISTRY

from sandbox import (
    CompiledQuery,
    ParameterSpec,
    ParamType,
    TableSchema,
    TemplateKind,
    TemplateRejected,
    compile_template,
)

GROUPED = "SELECT district, COUNT(*) AS n FROM market.enterprise_registry"


def compile_(
    sql: str,
    tables: dict[str, TableSchema],
    *,
    params: tuple[str, ...] = (),
    count_column: str | None = "n",
    kind: TemplateKind = TemplateKind.AGGREGATE,
) -> CompiledQuery:
    specs = {
        "year": ParameterSpec("year", ParamType.INTEGER, min=2015, max=2030),
        "industry": ParameterSpec("industry", ParamType.STRING),
    }
    return compile_template(
        sql,
        kind=kind,
        tables=tables,
        parameters={p: specs[p] for p in params},
        count_column=count_column,
    )


def test_design_example_compiles(example_query: CompiledQuery) -> None:
    q = example_query
    assert q.kind is TemplateKind.AGGREGATE
    assert q.source_sql == EXAMPLE_SQL
    assert "$industry" in q.duckdb_sql and "$year" in q.duckdb_sql
    assert ":industry" not in q.duckdb_sql
    assert ":industry" in q.spark_sql and ":year" in q.spark_sql
    assert q.parameters == ("industry", "year")
    assert q.tables == (REGISTRY, FILINGS)
    assert q.output_columns == ("district", "enterprises")
    assert q.count_column == "enterprises"
    assert q.group_columns == ("district",)


@pytest.mark.parametrize(
    ("sql", "params", "reason"),
    [
        pytest.param(f"{GROUPED} GROUP BY district; SELECT 1", (), "exactly one statement",
                     id="multi-statement"),
        pytest.param(
            "WITH d AS (DELETE FROM market.enterprise_registry RETURNING *) "
            "SELECT COUNT(*) AS n FROM d", (), "DELETE is not allowed", id="delete-cte"),
        pytest.param("COPY market.enterprise_registry TO '/tmp/out.csv'", (), "COPY",
                     id="copy"),
        pytest.param("ATTACH '/tmp/x.db' AS x", (), "could not be parsed", id="attach"),
        pytest.param("PRAGMA version", (), "PRAGMA", id="pragma"),
        pytest.param("SET threads = 8", (), "SET", id="set"),
        pytest.param("INSERT INTO market.enterprise_registry VALUES (1)", (), "INSERT",
                     id="insert"),
        pytest.param(f"SELECT district, COUNT(*) AS n INTO x FROM {REGISTRY} GROUP BY district",
                     (), "INTO", id="select-into"),
        pytest.param("SELECT COUNT(*) AS n FROM read_parquet('/etc/data.parquet')", (),
                     "read_parquet", id="read_parquet"),
        pytest.param("SELECT COUNT(*) AS n FROM read_csv('/etc/passwd')", (), "read_csv",
                     id="read_csv"),
        pytest.param("SELECT COUNT(*) AS n FROM range(10)", (), "table functions",
                     id="range"),
        pytest.param("SELECT COUNT(*) AS n FROM 'data.parquet'", (), "not files",
                     id="file-literal"),
        pytest.param("SELECT COUNT(*) AS n FROM enterprise_registry", (),
                     "<department>.<name>", id="unqualified-table"),
        pytest.param("SELECT COUNT(*) AS n FROM market.unknown", (), "not a dataset",
                     id="unknown-table"),
        pytest.param("SELECT COUNT(*) AS n FROM memory.market.enterprise_registry", (),
                     "<department>.<name>", id="three-part-name"),
        pytest.param(f"{GROUPED} WHERE industry = :industry GROUP BY district", (),
                     "used but not declared", id="undeclared-placeholder"),
        pytest.param(f"{GROUPED} GROUP BY district", ("year",), "declared but never used",
                     id="unused-parameter"),
        pytest.param(f"{GROUPED} GROUP BY district LIMIT :year", ("year",), "LIMIT",
                     id="placeholder-limit"),
        pytest.param(f"{GROUPED} GROUP BY district ORDER BY :year", ("year",), "ORDER",
                     id="placeholder-order-by"),
        pytest.param("SELECT * FROM market.enterprise_registry", (), "SELECT \\*",
                     id="select-star"),
        pytest.param("SELECT r.*, COUNT(*) AS n FROM market.enterprise_registry AS r", (),
                     "SELECT \\*", id="qualified-star"),
        pytest.param("SELECT enterprise_id, COUNT(*) AS n FROM market.enterprise_registry "
                     "GROUP BY enterprise_id", (), "identifier", id="identifier-projected"),
        pytest.param("SELECT district, STRING_AGG(enterprise_id, ',') AS ids, COUNT(*) AS n "
                     f"FROM {REGISTRY} GROUP BY district", (), "identifier",
                     id="string_agg-identifier"),
        pytest.param(f"SELECT district, MAX(enterprise_id) AS m, COUNT(*) AS n FROM {REGISTRY} "
                     "GROUP BY district", (), "identifier", id="max-identifier"),
        pytest.param(f"WITH x AS (SELECT enterprise_id AS e FROM {REGISTRY}) "
                     "SELECT e, COUNT(*) AS n FROM x GROUP BY e", (), "identifier",
                     id="identifier-through-cte"),
        pytest.param("SELECT district, (SELECT MIN(t.enterprise_id) FROM tax.filings AS t) "
                     f"AS m, COUNT(*) AS n FROM {REGISTRY} GROUP BY district", (),
                     "identifier", id="identifier-in-scalar-subquery"),
        pytest.param(f"SELECT district, SUM(registered_capital) AS s FROM {REGISTRY} "
                     "GROUP BY district", (), "count_column n is not an output column",
                     id="missing-count-column"),
        pytest.param(f"SELECT district, COUNT(*) + 1 AS n FROM {REGISTRY} GROUP BY district",
                     (), "must be COUNT", id="count-column-not-a-count"),
        pytest.param(f"SELECT district, industry, COUNT(*) AS n FROM {REGISTRY} "
                     "GROUP BY district", (), "GROUP BY key or an aggregate",
                     id="ungrouped-output"),
        pytest.param(f"{GROUPED} GROUP BY district, industry", (), "must also be an output",
                     id="hidden-group-key"),
        pytest.param(f"{GROUPED} GROUP BY ROLLUP (district)", (), "ROLLUP", id="rollup"),
        pytest.param(f"SELECT district, COUNT(*) FROM {REGISTRY} GROUP BY district", (),
                     "needs a name", id="unnamed-output"),
        pytest.param(f"SELECT district, COUNT(*) AS district FROM {REGISTRY} GROUP BY district",
                     (), "appears twice", id="duplicate-output"),
        pytest.param(f"SELECT district, COUNT(*) AS n, getenv('HOME') AS h FROM {REGISTRY} "
                     "GROUP BY district", (), "never allowed", id="getenv"),
        pytest.param(f"SELECT district, COUNT(*) AS n, current_setting('threads') AS s "
                     f"FROM {REGISTRY} GROUP BY district", (), "never allowed",
                     id="current_setting"),
        pytest.param(f"SELECT district, COUNT(*) AS n, duckdb_version() AS v FROM {REGISTRY} "
                     "GROUP BY district", (), "never allowed", id="duckdb-metadata"),
        pytest.param(f"SELECT district, COUNT(*) AS n, my_udf(district) AS u FROM {REGISTRY} "
                     "GROUP BY district", (), "allow-list", id="unknown-function"),
        pytest.param("WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) "
                     "SELECT COUNT(*) AS n FROM r", (), "recursive", id="recursive-cte"),
        pytest.param(f"{GROUPED} WHERE nope = 1 GROUP BY district", (), "could not be resolved",
                     id="unknown-column"),
        pytest.param(f"{GROUPED} WHERE district = $x GROUP BY district", (), ":name",
                     id="dollar-parameter"),
        pytest.param("", (), "no SQL", id="empty"),
        # Accepted before the aggregate review: a FILTERed count column is a conditional
        # count (a yes/no oracle), and a CTE may multiply the rows COUNT(*) counts.
        pytest.param(f"SELECT r.district AS d, COUNT(*) FILTER (WHERE r.industry = :industry) "
                     f"AS n FROM {REGISTRY} AS r GROUP BY r.district", ("industry",),
                     "must be COUNT", id="filtered-count-column"),
        pytest.param(f"WITH x AS (SELECT district, COUNT(DISTINCT enterprise_id) AS c FROM "
                     f"{REGISTRY} GROUP BY district) SELECT district, SUM(c) AS total, "
                     "COUNT(*) AS n FROM x GROUP BY district", (), "CTE", id="cte"),
    ],
)  # fmt: skip
def test_construct_is_rejected(
    tables: dict[str, TableSchema], sql: str, params: tuple[str, ...], reason: str
) -> None:
    with pytest.raises(TemplateRejected, match=reason):
        compile_(sql, tables, params=params)


def test_aggregate_needs_a_count_column(tables: dict[str, TableSchema]) -> None:
    with pytest.raises(TemplateRejected, match=r"needs output\.count_column"):
        compile_(f"{GROUPED} GROUP BY district", tables, count_column=None)


@pytest.mark.parametrize(
    "sql",
    [
        f"SELECT district, COUNT(DISTINCT enterprise_id) AS n, SUM(registered_capital) AS s "
        f"FROM {REGISTRY} GROUP BY 1",
        f"SELECT COUNT(*) AS n FROM {REGISTRY}",
        f"SELECT district, COUNT(*) AS n FROM {REGISTRY} AS r WHERE EXISTS "
        f"(SELECT 1 FROM tax.filings AS t WHERE t.enterprise_id = r.enterprise_id) "
        f"GROUP BY district",
    ],
)
def test_safe_aggregate_is_accepted(tables: dict[str, TableSchema], sql: str) -> None:
    params = ("industry",) if ":industry" in sql else ()
    compiled = compile_(sql, tables, params=params)
    assert compiled.count_column == "n"


def test_group_columns_follow_ordinal_group_by(tables: dict[str, TableSchema]) -> None:
    compiled = compile_(f"SELECT district, industry, COUNT(*) AS n FROM {REGISTRY} GROUP BY 1, 2",
                        tables)  # fmt: skip
    assert compiled.group_columns == ("district", "industry")


def test_comments_never_reach_the_engines(tables: dict[str, TableSchema]) -> None:
    sql = f"{GROUPED} /* note */ GROUP BY district -- */ , read_csv('/etc/passwd') AS x /*\n"
    compiled = compile_(sql, tables)
    for text in (compiled.duckdb_sql, compiled.spark_sql):
        assert "/*" not in text and "read_csv" not in text and "--" not in text


def test_parameter_values_are_not_an_input_of_compilation() -> None:
    """The compiler takes specs, never values: the SQL text cannot depend on a value."""
    import inspect

    assert set(inspect.signature(compile_template).parameters) == {
        "sql", "kind", "tables", "parameters", "count_column", "verify_key", "verify_answer",
        "verify_slots",
    }  # fmt: skip
