"""Attacks on template SQL, one per class the static checks defend against.

Each case is refused by `compile_template` at proposal with a reason naming the defence; the
matching text pins which check refused it, so removing that check fails the test.
"""

from __future__ import annotations

import pytest

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

REG = "market.enterprise_registry"
RES = "civil.residents"
TABLES = {
    REG: TableSchema(
        REG,
        (
            Column("enterprise_id", "VARCHAR", Sensitivity.IDENTIFIER, personal=False),
            Column("district", "VARCHAR", Sensitivity.PUBLIC, personal=False),
            Column("registered_capital", "DOUBLE", Sensitivity.SENSITIVE, personal=False),
            Column("founder_name", "VARCHAR", Sensitivity.QUASI_IDENTIFIER),
        ),
    ),
    RES: TableSchema(
        RES,
        (
            Column("person_id", "VARCHAR", Sensitivity.IDENTIFIER),
            Column("district", "VARCHAR", Sensitivity.PUBLIC),
            Column("birth_year", "INTEGER", Sensitivity.QUASI_IDENTIFIER),
        ),
    ),
}
SPECS = {
    "n": ParameterSpec("n", ParamType.INTEGER, min=1, max=100),
    "who": ParameterSpec("who", ParamType.STRING),
    "year": ParameterSpec("year", ParamType.INTEGER, min=1900, max=2030),
    "district": ParameterSpec("district", ParamType.STRING, values=("a", "b")),
}


def compile_(
    sql: str, *, kind: TemplateKind = TemplateKind.AGGREGATE, count: str | None = "n"
) -> CompiledQuery:
    used = {name: spec for name, spec in SPECS.items() if f":{name}" in sql}
    return compile_template(sql, kind=kind, tables=TABLES, parameters=used, count_column=count)


GROUPED = f"SELECT r.district, COUNT(*) AS n FROM {REG} AS r"

ATTACKS = [
    # identifier projection: the raw id, or an id smuggled through an aggregate or function
    ("identifier-projection", f"SELECT r.enterprise_id AS e, COUNT(*) AS n FROM {REG} AS r "
     "GROUP BY r.enterprise_id", "can reveal an identifier"),
    ("identifier-min", f"SELECT r.district, MIN(r.enterprise_id) AS e, COUNT(*) AS n FROM {REG} "
     "AS r GROUP BY r.district", "identifier|MIN"),
    ("identifier-string-agg", f"SELECT r.district, STRING_AGG(r.enterprise_id, ',') AS e, "
     f"COUNT(*) AS n FROM {REG} AS r GROUP BY r.district", "identifier|list or string"),
    ("identifier-array-agg", f"SELECT r.district, ARRAY_AGG(r.registered_capital) AS e, "
     f"COUNT(*) AS n FROM {REG} AS r GROUP BY r.district", "ARRAY_AGG|list or string"),
    # parameters driving LIMIT / ORDER BY / GROUP BY
    ("param-limit", f"{GROUPED} GROUP BY r.district LIMIT :n", "LIMIT"),
    ("param-order", f"{GROUPED} GROUP BY r.district ORDER BY :n", "ORDER"),
    # file-reading table functions and file names as tables
    ("read-csv", "SELECT COUNT(*) AS n FROM read_csv('/etc/passwd')", "table functions"),
    ("read-parquet", "SELECT COUNT(*) AS n FROM read_parquet('data/tax/filings.parquet')",
     "table functions"),
    ("quoted-file", "SELECT COUNT(*) AS n FROM 'data/tax/filings.parquet'", "not files, URLs"),
    ("query-function", f"SELECT COUNT(*) AS n FROM {REG} AS r WHERE r.district = "
     "query_table('x')", "never allowed"),
    ("getenv", f"SELECT COUNT(*) AS n FROM {REG} AS r WHERE r.district = getenv('HOME')",
     "never allowed"),
    # URL and file literals
    ("url-literal", f"SELECT COUNT(*) AS n FROM {REG} AS r WHERE r.district = "
     "'https://evil.example/x'", "files or URLs"),
    ("s3-literal", f"SELECT COUNT(*) AS n FROM {REG} AS r WHERE r.district = 's3://b/k'",
     "files or URLs"),
    ("path-literal", f"SELECT COUNT(*) AS n FROM {REG} AS r WHERE r.district = '/etc/passwd'",
     "files or URLs"),
    # statements that are not one read-only SELECT
    ("multi-statement", f"{GROUPED} GROUP BY r.district; DROP TABLE {REG}", "exactly one"),
    ("multi-select", f"{GROUPED} GROUP BY r.district; {GROUPED} GROUP BY r.district",
     "exactly one"),
    ("delete-cte", f"WITH x AS (DELETE FROM {REG} RETURNING *) SELECT COUNT(*) AS n FROM x",
     "DELETE"),
    ("insert-cte", f"WITH x AS (INSERT INTO {REG} VALUES ('a') RETURNING *) "
     "SELECT COUNT(*) AS n FROM x", "INSERT"),
    ("update-cte", f"WITH x AS (UPDATE {REG} SET district = 'a' RETURNING *) "
     "SELECT COUNT(*) AS n FROM x", "UPDATE"),
    ("pragma", "PRAGMA database_list", "PRAGMA"),
    ("set", "SET threads = 1", "SET"),
    ("attach", "ATTACH 'other.db' AS o", "parsed|not allowed"),
    ("copy", f"COPY {REG} TO 'out.csv'", "COPY"),
    ("export", "EXPORT DATABASE 'dump'", "parsed|not allowed"),
    ("install", "INSTALL httpfs", "single SELECT|not allowed"),
    ("load", "LOAD httpfs", "COMMAND|not allowed"),
    # tables outside the catalogue, or not fully qualified
    ("unqualified", "SELECT COUNT(*) AS n FROM enterprise_registry", "<department>.<name>"),
    ("undeclared", "SELECT COUNT(*) AS n FROM market.secret_list", "not a dataset"),
    ("information-schema", "SELECT COUNT(*) AS n FROM information_schema.tables",
     "not a dataset"),
    ("three-part", f"SELECT COUNT(*) AS n FROM db.{REG}", "<department>.<name>"),
    # parameters on identifier or high-cardinality columns
    ("param-on-identifier", f"SELECT COUNT(*) AS n FROM {RES} AS p WHERE p.person_id = :who",
     "identifier column"),
    ("param-on-quasi-identifier", f"SELECT COUNT(*) AS n FROM {RES} AS p WHERE "
     "p.birth_year = :year", "public columns"),
    ("param-like-quasi", f"SELECT COUNT(*) AS n FROM {REG} AS r WHERE r.founder_name LIKE :who",
     "public columns"),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "reason"), [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
def test_attack_is_refused_at_proposal(sql: str, reason: str) -> None:
    with pytest.raises(TemplateRejected, match=reason):
        compile_(sql)


def test_ranges_on_quasi_identifiers_and_enumerations_remain_allowed() -> None:
    compile_(f"SELECT p.district, COUNT(*) AS n FROM {RES} AS p WHERE p.birth_year >= :year "
             "GROUP BY p.district")  # fmt: skip
    compile_(f"{GROUPED} WHERE r.district = :district GROUP BY r.district")


LIST_ATTACKS = [
    ("personal-column", f"SELECT p.district FROM {RES} AS p", "personal"),
    ("sensitive-column", f"SELECT r.registered_capital FROM {REG} AS r", "sensitive"),
    ("expression", f"SELECT UPPER(r.district) AS d FROM {REG} AS r", "plain catalogue column"),
    ("derived-table", f"SELECT x.e FROM (SELECT p.person_id AS e FROM {RES} AS p) AS x",
     "straight from a catalogue table"),
    ("aggregate", f"SELECT r.district, COUNT(*) AS c FROM {REG} AS r GROUP BY r.district",
     "GROUP BY|plain"),
    ("lookup-by-id", f"SELECT r.district FROM {REG} AS r WHERE r.enterprise_id = :who",
     "identifier column"),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "reason"), [a[1:] for a in LIST_ATTACKS],
                         ids=[a[0] for a in LIST_ATTACKS])  # fmt: skip
def test_list_releases_only_plain_non_personal_columns(sql: str, reason: str) -> None:
    with pytest.raises(TemplateRejected, match=reason):
        compile_(sql, kind=TemplateKind.LIST, count=None)


def test_list_of_non_personal_codes_compiles() -> None:
    q = compile_(f"SELECT r.enterprise_id, r.district FROM {REG} AS r WHERE r.district = "
                 f":district AND NOT EXISTS (SELECT 1 FROM {RES} AS p WHERE p.district = "
                 "r.district)", kind=TemplateKind.LIST, count=None)  # fmt: skip
    assert q.output_columns == ("enterprise_id", "district")
