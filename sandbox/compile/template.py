"""Compile a template's SQL: parse it, check it statically, render it for each engine.

Templates are written in Spark SQL with ``:name`` parameters. Every check works on the
sqlglot syntax tree, never on the text. The order of checks:

1. exactly one statement, and it is a SELECT (``_parse_select``);
2. every node is on the allow-list; writes, commands, table functions and file readers are
   refused (``compile_safety.check_nodes``);
3. every table is a declared catalogue dataset or a CTE (``check_tables``);
4. no string literal names a file or URL (``check_literals``);
5. parameters are declared, used, and only stand for values (``check_placeholders``); outside
   VERIFY they are matched only against public columns (``check_parameter_columns``);
6. output columns have unique simple names (``compile_shape.output_names``);
7. the query is qualified against the catalogue schema (unknown columns are refused), then
   the rules of its kind apply (``_KIND_RULES``; for AGGREGATE and DP: ``compile_shape`` and
   ``compile_aggregate`` — one base table, no row-level values, no targeted lookups; for LIST:
   ``compile_list`` — plain non-personal columns, no targeted lookups; for VERIFY:
   ``compile_verify`` — a filter looked up by the requester's key, wrapped so only one bit
   per key, or a count, leaves);
8. it is rendered for DuckDB (``$name``) and Spark (``:name``), without comments (nothing in
   a comment can reach an engine).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import build_scope

from sandbox.compile import verify as compile_verify
from sandbox.compile.aggregate import (
    check_aggregate_functions,
    check_identifier_parameters,
    check_parameter_columns,
    check_row_source,
)
from sandbox.compile.lists import check_list_outputs
from sandbox.compile.query import CompiledQuery, TemplateKind
from sandbox.compile.safety import check_literals, check_nodes, check_placeholders, check_tables
from sandbox.compile.shape import check_aggregate, check_identifiers, output_names
from sandbox.errors import SandboxBug, TemplateRejected
from sandbox.params.spec import ParameterSpec
from sandbox.schema import Column, Sensitivity, TableSchema

MAX_SQL_LENGTH = 100_000

__all__ = [
    "Column",
    "CompiledQuery",
    "Sensitivity",
    "TableSchema",
    "TemplateKind",
    "compile_template",
]

_Tables = Mapping[str, TableSchema]
KindRule = Callable[[exp.Select, tuple[str, ...], str | None, _Tables], tuple[str, ...]]


def compile_template(
    sql: str,
    *,
    kind: TemplateKind,
    tables: Mapping[str, TableSchema],
    parameters: Mapping[str, ParameterSpec],
    count_column: str | None,
    verify_key: ParameterSpec | None = None,
    verify_answer: str = "match",
    verify_slots: int = 1,
) -> CompiledQuery:
    """Check ``sql`` and return it compiled; raise TemplateRejected with the reason.

    VERIFY templates need ``verify_key`` (the requester's key, written ``:<name>`` in the
    SQL) and are compiled for ``verify_slots`` keys (see ``compile_verify``).
    """
    try:
        kind = TemplateKind(kind)
    except ValueError:
        raise TemplateRejected("kind must be aggregate, dp, verify or list") from None
    for key, schema in tables.items():
        if schema.dataset_id != key:
            raise TemplateRejected(f"table schema under {key} is for {schema.dataset_id}")
    for key, spec in parameters.items():
        if spec.name != key:
            raise TemplateRejected(f"parameter spec under {key} is named {spec.name}")
    if (verify_key is not None) != (kind is TemplateKind.VERIFY):
        raise TemplateRejected("a verify key is required for, and only for, verify templates")
    tree = _parse_select(sql)
    check_nodes(tree)
    used_tables = check_tables(tree, tables)
    check_literals(tree)
    declared = {bound for spec in parameters.values() for bound in spec.bound_names}
    declared |= {verify_key.name} if verify_key is not None else set()
    if verify_key is not None and verify_key.name in parameters:
        raise TemplateRejected(f"the verify key {verify_key.name} is also a parameter")
    used_parameters = check_placeholders(tree, declared)
    if kind is TemplateKind.VERIFY:
        assert verify_key is not None  # checked above
        return _compile_verify(
            tree,
            sql,
            [tables[t] for t in used_tables],
            key=verify_key,
            answer=verify_answer,
            slots=verify_slots,
        )
    names = output_names(tree)
    if count_column is not None and count_column not in names:
        raise TemplateRejected(f"count_column {count_column} is not an output column")
    qualified = _qualify(tree, [tables[t] for t in used_tables])
    group_columns = _KIND_RULES[kind](qualified, names, count_column, tables)
    return CompiledQuery(
        kind=kind,
        source_sql=sql,
        duckdb_sql=tree.sql(dialect="duckdb", comments=False),
        spark_sql=tree.sql(dialect="spark", comments=False),
        parameters=used_parameters,
        tables=used_tables,
        output_columns=names,
        count_column=count_column,
        group_columns=group_columns,
    )


def _compile_verify(
    tree: exp.Select,
    sql: str,
    schemas: list[TableSchema],
    *,
    key: ParameterSpec,
    answer: str,
    slots: int,
) -> CompiledQuery:
    own = {p.name for p in tree.find_all(exp.Placeholder)} - {key.name}
    compile_verify.check_filter(tree, key.name, own)
    qualified = _qualify(tree, schemas)  # unknown columns are refused
    wrapped, outputs = compile_verify.wrap(tree, key.name, answer, slots)
    names = compile_verify.slot_names(slots)
    return CompiledQuery(
        kind=TemplateKind.VERIFY,
        source_sql=sql,
        duckdb_sql=wrapped.sql(dialect="duckdb", comments=False),
        spark_sql=wrapped.sql(dialect="spark", comments=False),
        parameters=tuple(sorted(own | set(names))),
        tables=tuple(sorted(s.dataset_id for s in schemas)),
        output_columns=outputs,
        count_column=None,
        group_columns=(),
        key_parameters=names,
        key_column=compile_verify.key_column(qualified, key.name),
    )


def compared_literals(sql: str) -> dict[str, tuple[str, ...]]:
    """String literals a template compares columns with (``col = 'x'``, ``col IN ('a', 'b')``),
    by column name: pre-flight data includes them so its filters have something to find."""
    found: dict[str, list[str]] = {}
    for node in _parse_select(sql).find_all(exp.EQ, exp.In):
        column = node.this
        others = node.expressions if isinstance(node, exp.In) else [node.expression]
        if not isinstance(column, exp.Column):
            continue
        for other in others:
            if isinstance(other, exp.Literal) and other.is_string:
                found.setdefault(column.name.lower(), []).append(other.this)
    return {name: tuple(dict.fromkeys(values)) for name, values in found.items()}


def _parse_select(sql: str) -> exp.Select:
    if not isinstance(sql, str) or not sql.strip():
        raise TemplateRejected("the template has no SQL")
    if len(sql) > MAX_SQL_LENGTH:
        raise TemplateRejected(f"the SQL is longer than {MAX_SQL_LENGTH} characters")
    try:
        statements = [s for s in sqlglot.parse(sql, read="spark") if s is not None]
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        where = f" at line {first.get('line')}, column {first.get('col')}" if first else ""
        raise TemplateRejected(
            f"the SQL could not be parsed{where}: {first.get('description', 'syntax error')}"
        ) from None
    except SqlglotError:
        raise TemplateRejected("the SQL could not be parsed") from None
    if len(statements) != 1:
        raise TemplateRejected(f"a template is exactly one statement, not {len(statements)}")
    tree = statements[0]
    if not isinstance(tree, exp.Select):
        check_nodes(tree)  # explains refused statements (COPY, ATTACH, …) specifically
        raise TemplateRejected(
            "a template is a single SELECT (UNION and friends may appear inside a CTE or subquery)"
        )
    return tree


def _qualify(tree: exp.Select, schemas: list[TableSchema]) -> exp.Select:
    """A copy of ``tree`` with every column resolved against the catalogue schema."""
    departments: dict[str, dict[str, dict[str, str]]] = {}
    for schema in schemas:
        columns = {c.name: "UNKNOWN" for c in schema.columns}  # types are not needed here
        departments.setdefault(schema.department, {})[schema.name] = columns
    mapping: dict[str, object] = dict(departments)
    try:
        qualified = qualify(
            tree.copy(),
            schema=mapping,
            dialect="spark",
            validate_qualify_columns=True,
            quote_identifiers=False,
        )
    except SqlglotError as exc:
        raise TemplateRejected(f"the query does not fit the catalogue: {exc}") from None
    if not isinstance(qualified, exp.Select):
        raise SandboxBug("qualifying a SELECT did not return a SELECT")
    return qualified


def _aggregate_rules(
    select: exp.Select,
    names: tuple[str, ...],
    count_column: str | None,
    tables: Mapping[str, TableSchema],
) -> tuple[str, ...]:
    group_columns = check_aggregate(select, names, count_column)
    root = build_scope(select)
    if root is None:
        raise SandboxBug("sqlglot built no scope for a SELECT")
    check_identifiers(root, names, tables)
    check_row_source(root)
    check_aggregate_functions(root, tables)
    check_identifier_parameters(root, tables)
    check_parameter_columns(root, tables)
    return group_columns


def _list_rules(
    select: exp.Select,
    names: tuple[str, ...],
    count_column: str | None,
    tables: Mapping[str, TableSchema],
) -> tuple[str, ...]:
    if count_column is not None:
        raise TemplateRejected("a list template has no count column")
    root = build_scope(select)
    if root is None:
        raise SandboxBug("sqlglot built no scope for a SELECT")
    check_list_outputs(root, names, tables)
    check_identifier_parameters(root, tables)
    check_parameter_columns(root, tables)
    return ()


def _verify_is_separate(
    select: exp.Select,
    names: tuple[str, ...],
    count_column: str | None,
    tables: Mapping[str, TableSchema],
) -> tuple[str, ...]:
    raise SandboxBug("verify templates are compiled by _compile_verify")


# DP templates compiled from SQL get the aggregate rules: fail closed until DP has its own.
_KIND_RULES: dict[TemplateKind, KindRule] = {
    TemplateKind.AGGREGATE: _aggregate_rules,
    TemplateKind.DP: _aggregate_rules,
    TemplateKind.VERIFY: _verify_is_separate,
    TemplateKind.LIST: _list_rules,
}
