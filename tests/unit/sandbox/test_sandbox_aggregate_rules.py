"""AGGREGATE rules that stop an approved template from releasing row-level values.

One test per hole found in review; each case is chosen so that only the rule under test
refuses it (the identifier-lineage and allow-list checks pass it).
"""

from __future__ import annotations

import re

import pytest
from sandbox_testdata import EXAMPLE_SQL

from sandbox import (
    Column,
    CompiledQuery,
    ParameterSpec,
    ParamType,
    Sensitivity,
    TableSchema,
    TemplateKind,
    TemplateRejected,
    compile_template,
)

REG = "market.enterprise_registry AS r"
BY_DISTRICT = f"SELECT r.district, COUNT(*) AS n FROM {REG}"
TYPES = {"year": ParamType.INTEGER, "above": ParamType.NUMBER}


@pytest.fixture
def catalogue() -> dict[str, TableSchema]:
    def schema(dataset: str, *columns: tuple[str, str, Sensitivity]) -> TableSchema:
        return TableSchema(dataset, tuple(Column(*c) for c in columns))

    return {
        s.dataset_id: s
        for s in (
            schema(
                "market.enterprise_registry",
                ("enterprise_id", "VARCHAR", Sensitivity.IDENTIFIER),
                ("district", "VARCHAR", Sensitivity.PUBLIC),
                ("industry", "VARCHAR", Sensitivity.PUBLIC),
                ("status", "VARCHAR", Sensitivity.PUBLIC),
                ("founded_year", "INTEGER", Sensitivity.QUASI_IDENTIFIER),
                ("registered_capital", "DOUBLE", Sensitivity.SENSITIVE),
            ),
            schema(
                "tax.filings",
                ("enterprise_id", "VARCHAR", Sensitivity.IDENTIFIER),
                ("year", "INTEGER", Sensitivity.PUBLIC),
            ),
            schema(
                "bench.events",
                ("event_id", "VARCHAR", Sensitivity.IDENTIFIER),
                ("district", "VARCHAR", Sensitivity.PUBLIC),
                ("year", "INTEGER", Sensitivity.PUBLIC),
                ("amount", "DOUBLE", Sensitivity.SENSITIVE),
            ),
        )
    }


def aggregate(sql: str, catalogue: dict[str, TableSchema], count: str = "n") -> CompiledQuery:
    names = sorted(set(re.findall(r":([a-z_]+)", sql)))
    params = {p: ParameterSpec(p, TYPES.get(p, ParamType.STRING)) for p in names}
    return compile_template(
        sql, kind=TemplateKind.AGGREGATE, tables=catalogue, parameters=params,
        count_column=count,
    )  # fmt: skip


def refused(sql: str, catalogue: dict[str, TableSchema], reason: str) -> None:
    with pytest.raises(TemplateRejected, match=reason):
        aggregate(sql, catalogue)


@pytest.mark.parametrize(
    ("sql", "count"),
    [
        (EXAMPLE_SQL, "enterprises"),
        ("SELECT r.district, COUNT(*) AS enterprises\nFROM market.enterprise_registry AS r\n"
         "WHERE r.industry = :industry AND r.status = 'active'\n  AND NOT EXISTS (SELECT 1 "
         "FROM tax.filings AS t WHERE t.enterprise_id = r.enterprise_id AND t.year = :year)\n"
         "GROUP BY r.district", "enterprises"),
        ("SELECT e.district, COUNT(*) AS events, SUM(e.amount) AS amount FROM bench.events "
         "AS e WHERE e.year = :year GROUP BY e.district", "events"),
        (f"SELECT r.district, COUNT(DISTINCT r.enterprise_id) AS n, AVG(r.registered_capital) "
         f"AS avg_capital, MAX(r.industry) AS top FROM {REG} GROUP BY r.district", "n"),
        (f"{BY_DISTRICT} WHERE r.enterprise_id IN (SELECT t.enterprise_id FROM tax.filings AS "
         "t WHERE t.year = :year) AND r.registered_capital > :above GROUP BY r.district", "n"),
    ],
)  # fmt: skip
def test_safe_aggregates_still_compile(
    catalogue: dict[str, TableSchema], sql: str, count: str
) -> None:
    assert aggregate(sql, catalogue, count).count_column == count


@pytest.mark.parametrize(
    "agg",
    ["ARRAY_AGG(r.district)", "COLLECT_LIST(r.registered_capital)", "STRING_AGG(r.industry, ',')",
     "GROUP_CONCAT(r.district)"],
)  # fmt: skip
def test_list_and_string_aggregates_are_refused(
    catalogue: dict[str, TableSchema], agg: str
) -> None:
    refused(f"{BY_DISTRICT.replace(' AS n', f' AS n, {agg} AS xs')} GROUP BY r.district",
            catalogue, "list or string of row values")  # fmt: skip
    others = ("LIST(r.district)", "HISTOGRAM(r.district)", "COLLECT_SET(r.industry)")
    for other in others:  # refused by the allow-list already
        with pytest.raises(TemplateRejected):
            aggregate(f"SELECT COUNT(*) AS n, {other} AS xs FROM {REG}", catalogue)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT r.district, COUNT(*) AS n, (SELECT SUM(q.registered_capital) FROM "
        "market.enterprise_registry AS q WHERE q.district = 'c' AND q.industry = 'mining') "
        f"AS cap FROM {REG} GROUP BY r.district",
        f"{BY_DISTRICT} GROUP BY r.district HAVING COUNT(*) > (SELECT COUNT(*) FROM "
        "tax.filings AS t WHERE t.year = :year)",
        f"{BY_DISTRICT} GROUP BY r.district ORDER BY (SELECT SUM(q.registered_capital) FROM "
        "market.enterprise_registry AS q WHERE q.district = r.district)",
    ],
)
def test_subqueries_outside_where_are_refused(catalogue: dict[str, TableSchema], sql: str) -> None:
    refused(sql, catalogue, "subqueries only inside WHERE")


def test_review_scalar_subquery_is_refused(catalogue: dict[str, TableSchema]) -> None:
    sql = ("SELECT r.district, COUNT(*) AS n, (SELECT MAX(q.registered_capital) FROM "
           "market.enterprise_registry q WHERE q.enterprise_id = :target) AS cap "
           f"FROM {REG} GROUP BY r.district")  # fmt: skip
    refused(sql, catalogue, ".")


@pytest.mark.parametrize(
    ("outputs", "reason"),
    [
        ("COUNT(CASE WHEN r.registered_capital > :above THEN 1 END) AS n", "must be COUNT"),
        ("COUNT(*) FILTER (WHERE r.registered_capital > :above) AS n", "must be COUNT"),
        ("COUNT(r.registered_capital > :above OR NULL) AS n", "must be COUNT"),
        ("COUNT(DISTINCT CASE WHEN r.registered_capital > :above THEN r.district END) AS n",
         "must be COUNT"),
        ("COUNT(*) AS n, COUNT(CASE WHEN r.registered_capital > :above THEN 1 END) AS big",
         "over a condition"),
        ("COUNT(*) AS n, SUM(IF(r.registered_capital > :above, 1, 0)) AS big",
         "over a condition"),
        ("COUNT(*) AS n, COUNT_IF(r.registered_capital > :above) AS big", "COUNT_IF"),
        ("COUNT(*) AS n, COUNT(*) FILTER (WHERE r.registered_capital > :above) AS big",
         "FILTER"),
        ("COUNT(*) AS n, COUNT(r.registered_capital + :above) AS big", "plain columns"),
    ],
)  # fmt: skip
def test_conditional_counts_are_refused(
    catalogue: dict[str, TableSchema], outputs: str, reason: str
) -> None:
    refused(f"SELECT r.district, {outputs} FROM {REG} GROUP BY r.district", catalogue, reason)


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        (f"{BY_DISTRICT} CROSS JOIN tax.filings AS t GROUP BY r.district", "JOIN"),
        (f"{BY_DISTRICT}, tax.filings AS t GROUP BY r.district", "JOIN"),
        (f"{BY_DISTRICT} JOIN tax.filings AS t ON t.enterprise_id = r.enterprise_id "
         "GROUP BY r.district", "JOIN"),
        (f"{BY_DISTRICT} LEFT JOIN tax.filings AS t ON t.year > 0 GROUP BY r.district", "JOIN"),
        (f"{BY_DISTRICT} WHERE r.district IN (SELECT q.district FROM "
         "market.enterprise_registry AS q UNION ALL SELECT q.industry FROM "
         "market.enterprise_registry AS q) GROUP BY r.district", "UNION"),
        ("SELECT x.district, COUNT(*) AS n FROM (SELECT q.district FROM "
         "market.enterprise_registry AS q) AS x GROUP BY x.district", "derived table"),
        ("WITH x AS (SELECT q.district FROM market.enterprise_registry AS q) "
         "SELECT x.district, COUNT(*) AS n FROM x GROUP BY x.district", "CTE"),
        (f"{BY_DISTRICT} WHERE r.district IN (SELECT t.enterprise_id FROM tax.filings AS t "
         "INTERSECT SELECT q.district FROM market.enterprise_registry AS q) "
         "GROUP BY r.district", "INTERSECT"),
    ],
)  # fmt: skip
def test_row_multiplication_is_refused(
    catalogue: dict[str, TableSchema], sql: str, reason: str
) -> None:
    refused(sql, catalogue, reason)


@pytest.mark.parametrize(
    "condition",
    ["r.enterprise_id = :target", "r.enterprise_id IN (:target, :other)",
     "r.enterprise_id <> :target", "r.enterprise_id LIKE :target",
     "r.enterprise_id BETWEEN :target AND :other", "LOWER(r.enterprise_id) = LOWER(:target)",
     "EXISTS (SELECT 1 FROM tax.filings AS t WHERE t.enterprise_id = :target "
     "AND t.enterprise_id = r.enterprise_id)", "r.enterprise_id IN (SELECT :target)",
     "CASE r.enterprise_id WHEN :target THEN TRUE ELSE FALSE END",
     ":target IN (SELECT t.enterprise_id FROM tax.filings AS t "
     "WHERE t.enterprise_id = r.enterprise_id)"],
)  # fmt: skip
def test_parameters_on_identifier_columns_are_refused(
    catalogue: dict[str, TableSchema], condition: str
) -> None:
    refused(f"{BY_DISTRICT} WHERE {condition} GROUP BY r.district", catalogue,
            "identifier column")  # fmt: skip


@pytest.mark.parametrize(
    "agg",
    ["MIN(r.registered_capital)", "MAX(r.registered_capital)", "MAX(r.founded_year)",
     "ANY_VALUE(r.registered_capital)", "FIRST(r.registered_capital)",
     "LAST(r.registered_capital)", "MAX_BY(r.registered_capital, r.district)",
     "ARG_MIN(r.district, r.registered_capital)", "MODE(r.registered_capital)",
     "MEDIAN(r.registered_capital)", "PERCENTILE(r.registered_capital, 0.5)",
     "APPROX_PERCENTILE(r.registered_capital, 0.5)"],
)  # fmt: skip
def test_single_value_aggregates_of_non_public_columns_are_refused(
    catalogue: dict[str, TableSchema], agg: str
) -> None:
    refused(f"{BY_DISTRICT.replace(' AS n', f' AS n, {agg} AS v')} GROUP BY r.district",
            catalogue, "one contributor's exact value|not allowed in templates")  # fmt: skip
