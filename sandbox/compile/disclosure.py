"""Derive the auxiliary queries disclosure control needs from a compiled AGGREGATE template.

The released table says how many rows each group has and what its sums are; it does not say
how many *units* (people, enterprises) contributed, how much the largest contributors hold,
or which units they were. Two queries answer that, built from the template's own syntax tree
with sqlglot (same FROM, WHERE and GROUP BY expressions; parameters stay placeholders the
engine binds, nothing is spliced into text):

- ``contributors``: per group, the number of distinct units (``units``) and, for every
  magnitude output (``SUM``/``AVG`` of a column), the total of absolute contributions per
  unit and the top-n of them — for the dominance (n, k) and p % rules;
- ``populations``: per group, an invertible Bloom lookup table (IBLT) of keyed hashes of the
  contributing units — the population sketch the differencing defence compares across
  releases. A unit's hash is DuckDB's ``hash`` applied in two rounds keyed with two secret
  words derived from a per-deployment secret (bound as parameters), so the sketch holds
  no re-identifiable id. (SHA-256 in SQL cost ~50x more per row.) Unit ``u`` is in three
  cells (one per sub-table of ``cells_per_hash`` cells); each cell holds the count, the
  XOR of the 64-bit hashes and the XOR of a check value ``hash(h)`` (``population.check_of``
  is the same function in Python).

A unit is the dataset's privacy unit (or identifier) column; without one every row is its
own contributor and no population sketch is derived.

Threshold probes: an aggregate whose argument holds a parameter (``SUM(SIGN(x - :t))``)
turns a release into a conditional count chosen at run time, so it is refused here.
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from sandbox.compile.auxiliary import POPULATION_KEYS, AuxiliaryQuery, DisclosureQueries
from sandbox.compile.query import CompiledQuery, TemplateKind
from sandbox.disclosure.population import HASHES, SHIFT
from sandbox.errors import SandboxBug, TemplateRejected

SCHEME_PROBE = "insitu population sketch scheme 1"


def derive_disclosure_queries(
    query: CompiledQuery,
    *,
    unit: str | None,
    top_n: int,
    cells_per_hash: int,
    max_groups: int,
    unit_is_unique: bool = False,
) -> DisclosureQueries:
    """The contributor and population queries of an AGGREGATE ``query``.

    ``unit_is_unique``: every row has its own non-NULL unit (checked by the caller with
    ``uniqueness_query`` for this version of the data), so rows need no grouping by unit.
    """
    if query.kind is not TemplateKind.AGGREGATE:
        raise SandboxBug("disclosure queries are derived for aggregate templates only")
    if not 1 <= top_n <= 10 or not 1 <= cells_per_hash <= 2**SHIFT:
        raise SandboxBug("top_n must be 1..10 and cells_per_hash 1..2**21")
    select = _parse(query.source_sql)
    _refuse_threshold_probes(select)
    source = select.args.get("from_") or select.args.get("from")
    if not isinstance(source, exp.From) or not isinstance(source.this, exp.Table):
        raise SandboxBug("an aggregate template reads one table")
    table = source.this
    where = select.args.get("where")
    items = {item.alias_or_name: item for item in select.selects}
    groups = [_unaliased(items[name]).copy() for name in query.group_columns]
    magnitudes: list[tuple[str, exp.Expr]] = []
    for name in query.output_columns:
        value = _unaliased(items[name])
        if isinstance(value, exp.Sum | exp.Avg):
            magnitudes.append((name, value.this.copy()))
    unit_expr: exp.Expr | None = (
        exp.column(unit, table=table.alias_or_name) if unit is not None else None
    )

    def contributions(with_magnitudes: bool) -> exp.Select:
        """Per group (g0..), per unit (u): the unit's magnitude sums (m0..)."""
        columns: list[exp.Expr] = [exp.alias_(g.copy(), f"g{i}") for i, g in enumerate(groups)]
        if unit_expr is not None:
            columns.append(exp.alias_(unit_expr.copy(), "u"))
        if with_magnitudes:
            for i, (_name, value) in enumerate(magnitudes):
                contribution = exp.func("COALESCE", value.copy(), exp.Literal.number(0))
                if unit_expr is not None and not unit_is_unique:
                    contribution = exp.Sum(this=contribution)
                columns.append(exp.alias_(contribution, f"m{i}"))
        inner = exp.select(*columns).from_(table.copy())
        if where is not None:
            inner = inner.where(where.this.copy())
        if unit_expr is not None and not unit_is_unique:
            inner = inner.group_by(*[g.copy() for g in groups], unit_expr.copy())
        return inner

    keys = [f"g{i}" for i in range(len(groups))]
    contributors = _contributors_sql(contributions(True), keys, len(magnitudes), top_n)
    stats_columns = (
        *keys,
        "units",
        *(f"{kind}{i}" for i in range(len(magnitudes)) for kind in ("total", "top")),
    )
    populations = None
    if unit_expr is not None:
        populations_sql = _populations_sql(contributions(False), keys, cells_per_hash)
        populations = AuxiliaryQuery(
            name="populations",
            duckdb_sql=populations_sql,
            parameters=_parameters(populations_sql, extra=POPULATION_KEYS),
            output_columns=(*keys, "cell", "n", "keys", "checks", "scheme"),
            max_rows=max_groups * HASHES * cells_per_hash,
        )
    return DisclosureQueries(
        dataset_id=f"{table.db}.{table.name}".lower(),
        group_columns=query.group_columns,
        magnitudes=tuple(name for name, _value in magnitudes),
        top_n=top_n,
        contributors=AuxiliaryQuery(
            name="contributors",
            duckdb_sql=contributors,
            parameters=_parameters(contributors),
            output_columns=stats_columns,
            max_rows=max_groups,
        ),
        populations=populations,
        cells_per_hash=cells_per_hash,
    )


def uniqueness_query(dataset_id: str, unit: str) -> CompiledQuery:
    """Whether every row of ``dataset_id`` has its own non-NULL ``unit``: rows, distinct units."""
    department, name = dataset_id.split(".")
    column = exp.column(unit, table="t")
    select = exp.select(
        exp.alias_(exp.Count(this=exp.Star()), "n_rows"),
        exp.alias_(exp.Count(this=exp.Distinct(expressions=[column])), "n_units"),
    ).from_(exp.table_(name, db=department, alias="t"))
    sql = select.sql(dialect="duckdb", comments=False)
    return CompiledQuery(
        kind=TemplateKind.AGGREGATE,
        source_sql=select.sql(dialect="spark", comments=False),
        duckdb_sql=sql,
        spark_sql=select.sql(dialect="spark", comments=False),
        parameters=(),
        tables=(dataset_id,),
        output_columns=("n_rows", "n_units"),
        count_column="n_rows",
        group_columns=(),
    )


def base_table(query: CompiledQuery) -> str:
    """The dataset id an AGGREGATE template counts rows of (its FROM table)."""
    source = _parse(query.source_sql).args.get("from_")
    if not isinstance(source, exp.From) or not isinstance(source.this, exp.Table):
        raise SandboxBug("an aggregate template reads one table")
    return f"{source.this.db}.{source.this.name}".lower()


def _contributors_sql(inner: exp.Select, keys: list[str], magnitudes: int, top_n: int) -> str:
    """Per group: units, and per magnitude the absolute total and the top n contributions."""
    outputs = [*keys, "COUNT(*) AS units"]
    for i in range(magnitudes):
        outputs.append(f"SUM(ABS(m{i})) AS total{i}")
        outputs.append(f"MAX(ABS(m{i}), {top_n}) AS top{i}")  # DuckDB: the n largest, a list
    outer = exp.select(*outputs, dialect="duckdb").from_("insitu_c").with_("insitu_c", as_=inner)
    if keys:
        outer = outer.group_by(*keys)
    return outer.sql(dialect="duckdb", comments=False)


def _populations_sql(inner: exp.Select, keys: list[str], cells_per_hash: int) -> str:
    """Per group and IBLT cell: the count, XOR of keyed unit hashes and XOR of check values.

    A unit's hash is ``hash(hash(hash(u) XOR k1) XOR k2)`` with DuckDB's ``hash`` (MurmurHash
    finaliser on integers; k1 and k2 are bound parameters), the check value ``hash(h)``
    (``population.check_of`` in Python). ``scheme`` is ``hash`` of a fixed text, so sketches
    made by a DuckDB whose hash function differs are never compared with these. Every text
    below is a constant or a generated column name.
    """
    k1, k2 = (f"CAST(${name} AS UBIGINT)" for name in POPULATION_KEYS)
    hashed = exp.select(
        *keys, f"HASH(XOR(HASH(XOR(HASH(u), {k1})), {k2})) AS h", dialect="duckdb"
    ).from_("insitu_c")
    checked = exp.select("*", "HASH(h) AS chk", dialect="duckdb").from_("hashed")
    # One aggregate per sub-table, unioned: a CROSS JOIN with the three hash functions cost
    # ~15x more in DuckDB (9 s against 0.5 s at 10M rows).
    parts = []
    for j in range(HASHES):
        cell = f"{j * cells_per_hash} + ((h >> {j * SHIFT}) % {cells_per_hash})"
        parts.append(
            exp.select(
                *keys,
                f"{cell} AS cell",
                "COUNT(*) AS n",
                "BIT_XOR(h) AS keys",
                "BIT_XOR(chk) AS checks",
                f"HASH('{SCHEME_PROBE}') AS scheme",
                dialect="duckdb",
            )
            .from_("checked")
            .group_by(*keys, cell, dialect="duckdb")
        )
    union = exp.union(exp.union(parts[0], parts[1], distinct=False), parts[2], distinct=False)
    outer = (
        exp.select("*")
        .from_(exp.alias_(exp.Subquery(this=union), "cells"))
        .with_("insitu_c", as_=inner)
        .with_("hashed", as_=hashed)
        .with_("checked", as_=checked)
    )
    return outer.sql(dialect="duckdb", comments=False)


def _parse(sql: str) -> exp.Select:
    try:
        tree = sqlglot.parse_one(sql, read="spark")
    except SqlglotError:
        raise SandboxBug("a compiled template no longer parses") from None
    if not isinstance(tree, exp.Select):
        raise SandboxBug("a compiled aggregate template is a SELECT")
    return tree


def _refuse_threshold_probes(select: exp.Select) -> None:
    for node in select.walk():
        if isinstance(node, exp.AggFunc) and node.find(exp.Placeholder) is not None:
            raise TemplateRejected(
                "an aggregate over an expression with a parameter (such as SUM(SIGN(x - :t))) "
                "is a conditional count chosen at run time; put parameters in WHERE"
            )


def _unaliased(node: exp.Expr) -> exp.Expr:
    return node.this if isinstance(node, exp.Alias) else node


def _parameters(sql: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The ``$name`` parameters the rendered DuckDB SQL binds."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    names = {p.name for p in tree.find_all(exp.Placeholder) if p.name}
    return tuple(sorted(names | set(extra)))
