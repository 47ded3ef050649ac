"""Conditional aggregates with constants over sensitive columns (issue 15, attack 3).

``SUM(SIGN(x - 150000000))`` passed at proposal: a function of a sensitive column and a
constant that counts the units above a threshold inside a cell the minimum group size sees
whole. Each case is refused by ``compile_template`` with a reason that names the construct;
the linear forms an analyst needs (``SUM(x)``, ``AVG(x * 0.001 + 1)``, plain casts) still
compile. Removing ``_check_linear`` (or the FILTER / condition checks) fails these tests.
"""

from __future__ import annotations

import pytest

from sandbox import (
    Column,
    Sensitivity,
    TableSchema,
    TemplateKind,
    TemplateRejected,
    compile_template,
)

REG = "market.enterprise_registry"
TABLES = {
    REG: TableSchema(
        REG,
        (
            Column("enterprise_id", "VARCHAR", Sensitivity.IDENTIFIER, personal=False),
            Column("district", "VARCHAR", Sensitivity.PUBLIC, personal=False),
            Column("founded", "INTEGER", Sensitivity.PUBLIC, personal=False),
            Column("capital", "DOUBLE", Sensitivity.SENSITIVE, personal=False),
            Column("employees", "INTEGER", Sensitivity.QUASI_IDENTIFIER, personal=False),
        ),
    )
}


def compile_(aggregate: str) -> object:
    sql = f"SELECT r.district, COUNT(*) AS n, {aggregate} AS v FROM {REG} AS r GROUP BY r.district"
    return compile_template(
        sql, kind=TemplateKind.AGGREGATE, tables=TABLES, parameters={}, count_column="n"
    )


@pytest.mark.parametrize(
    ("aggregate", "reason"),
    [
        ("SUM(SIGN(r.capital - 150000000))", "SUM over SIGN of capital"),
        ("SUM(SIGN(r.employees - 50) + 1)", "SUM over SIGN of employees"),
        ("SUM(LEAST(GREATEST(r.capital - 1e8, 0), 1))", "over (LEAST|GREATEST) of capital"),
        ("SUM(FLOOR(r.capital / 1e8))", "SUM over FLOOR of capital"),
        ("AVG(ROUND(r.capital / 1e9))", "AVG over ROUND of capital"),
        ("SUM(ABS(r.capital - 1e8) + r.capital)", "SUM over ABS of capital"),
        ("SUM(CAST(r.capital / 1e8 AS INT))", "over (TRY_)?CAST of capital"),
        ("SUM(r.capital * r.capital)", "SUM over .* of capital"),
        ("SUM(r.capital / r.employees)", "over .* of capital"),
        ("SUM(POWER(r.capital, 2))", "over POW(ER)? of capital"),
        ("SUM(COALESCE(r.capital * 0, 1))", "over COALESCE of capital"),
        # conditions inside an aggregate: refused by the condition rule, with its reason
        ("SUM(CASE WHEN r.capital > 1e8 THEN 1 ELSE 0 END)", "over a condition"),
        ("SUM(CAST(r.capital > 1e8 AS INT))", "over a condition"),
        ("COUNT(*) FILTER (WHERE r.capital > 150000000)", "FILTER"),
        ("COUNT_IF(r.capital > 150000000)", "COUNT_IF"),
    ],
)
def test_a_threshold_on_a_sensitive_column_inside_an_aggregate_is_refused(
    aggregate: str, reason: str
) -> None:
    with pytest.raises(TemplateRejected, match=reason):
        compile_(aggregate)


@pytest.mark.parametrize(
    "aggregate",
    [
        "SUM(r.capital)",
        "AVG(r.capital * 0.001 + 1)",
        "SUM(-(r.capital - 100))",
        "SUM(CAST(r.capital AS BIGINT))",
        "STDDEV_POP(r.capital)",
        "SUM(SIGN(r.founded - 2000))",  # a public column: its sub-groups are public anyway
    ],
)
def test_linear_aggregates_of_sensitive_columns_still_compile(aggregate: str) -> None:
    compile_(aggregate)


@pytest.mark.parametrize("aggregate", ["CORR(r.capital, r.founded)", "COVAR_POP(r.capital, 1)"])
def test_two_column_statistics_of_a_sensitive_column_are_refused(aggregate: str) -> None:
    with pytest.raises(TemplateRejected, match="products of two values"):
        compile_(aggregate)
