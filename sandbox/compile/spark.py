"""The Spark text of one job: dataset tables replaced by the job's temporary views.

A Spark session cannot hold a temporary view named ``market.enterprise_registry`` (a
temporary view has no schema), so the Spark engine mounts each dataset the query reads as a
view ``insitu_v<i>`` of a fresh session and runs the compiled Spark SQL with the tables
renamed. The rename works on the sqlglot tree of the compiled text, and checks it again on
the way (defence in depth behind ``compile_template``): exactly one query, no statement
that writes or runs commands, every qualified table a mounted dataset, and exactly the
declared ``:name`` parameters. Values are never part of the text.
"""

from __future__ import annotations

from functools import lru_cache

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, SqlglotError

from sandbox.errors import ExecutionCategory, ExecutionError

_WRITES = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Command)


def view_name(position: int) -> str:
    """The temporary view of the dataset at ``position`` of a query's (sorted) tables."""
    return f"insitu_v{position}"


def job_sql(sql: str, tables: tuple[str, ...], parameters: tuple[str, ...]) -> str:
    """``sql`` (Spark, ``:name`` parameters) reading view ``insitu_v<i>`` for ``tables[i]``.

    An ExecutionError(refused) when the text is not one query over exactly those datasets
    with exactly those parameters."""
    rendered = _job_sql(sql, tables, tuple(sorted(parameters)))
    if rendered is None:
        raise ExecutionError(ExecutionCategory.REFUSED)
    return rendered


def profile_sql(duckdb_sql: str, dataset_id: str, parameters: tuple[str, ...]) -> str:
    """A data-quality profile query (``ProfileRequest.sql``, DuckDB with ``$name``
    parameters) in Spark, reading view ``insitu_v0``: sqlglot's rendering, then the same
    checks as a job's text. An ExecutionError(refused) when it cannot be said in Spark."""
    try:
        (spark,) = sqlglot.transpile(
            duckdb_sql, read="duckdb", write="spark", unsupported_level=ErrorLevel.RAISE
        )
    except (SqlglotError, ValueError):
        raise ExecutionError(ExecutionCategory.REFUSED) from None
    return job_sql(spark, (dataset_id,), parameters)


@lru_cache(maxsize=512)
def _job_sql(sql: str, tables: tuple[str, ...], parameters: tuple[str, ...]) -> str | None:
    try:
        statements = [s for s in sqlglot.parse(sql, read="spark") if s is not None]
    except SqlglotError:
        return None
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        return None
    tree = statements[0]
    if any(tree.find_all(*_WRITES)):
        return None
    named = {p.name for p in tree.find_all(exp.Placeholder)}
    if named != set(parameters) or any(not p.name for p in tree.find_all(exp.Placeholder)):
        return None
    views = {table: view_name(i) for i, table in enumerate(tables)}
    for table in list(tree.find_all(exp.Table)):
        if not table.args.get("db"):
            continue  # a CTE's name (compile_template refused any other unqualified table)
        if table.args.get("catalog"):
            return None
        view = views.get(f"{table.db}.{table.name}".lower())
        if view is None:
            return None
        alias = table.args.get("alias") or exp.TableAlias(this=exp.to_identifier(table.name))
        table.replace(exp.Table(this=exp.to_identifier(view), alias=alias.copy()))
    try:  # anything sqlglot cannot say in Spark fails closed, never silently dropped
        return tree.sql(dialect="spark", comments=False, unsupported_level=ErrorLevel.RAISE)
    except SqlglotError:
        return None
