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
from sandbox.disclosure.population import HASHES, SHIFT, SPARK_SCHEME
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
    dispersions: list[tuple[str, exp.Expr]] = []
    for name in query.output_columns:
        value = _unaliased(items[name])
        if isinstance(value, exp.Sum | exp.Avg):
            magnitudes.append((name, value.this.copy()))
        elif isinstance(value, DISPERSIONS):
            dispersions.append((name, value.this.copy()))
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
    populations = members = None
    if unit_expr is not None:
        populations_sql = _populations_sql(contributions(False), keys, cells_per_hash)
        populations = AuxiliaryQuery(
            name="populations",
            duckdb_sql=populations_sql,
            parameters=_parameters(populations_sql, extra=POPULATION_KEYS),
            output_columns=(*keys, "cell", "n", "keys", "checks", "scheme"),
            max_rows=max_groups * HASHES * cells_per_hash,
            spark_sql=_spark_populations_sql(contributions(False), keys, cells_per_hash),
        )
        members_sql = _members_sql(contributions(False), keys)
        members = AuxiliaryQuery(
            name="members",
            duckdb_sql=members_sql,
            parameters=_parameters(members_sql, extra=POPULATION_KEYS),
            output_columns=(*keys, "n", "hashes", "scheme"),
            max_rows=max_groups,
            spark_sql=_spark_members_sql(contributions(False), keys),
        )
    spread = None
    if dispersions:
        spread_sql = _contributors_sql(
            deviations := _deviations(table, where, groups, unit_expr, dispersions),
            keys,
            len(dispersions),
            top_n,
        )
        spread = AuxiliaryQuery(
            name="dispersions",
            duckdb_sql=spread_sql,
            parameters=_parameters(spread_sql),
            output_columns=(
                *keys,
                "units",
                *(f"{kind}{i}" for i in range(len(dispersions)) for kind in ("total", "top")),
            ),
            max_rows=max_groups,
            spark_sql=_spark_contributors_sql(deviations, keys, len(dispersions), top_n),
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
            spark_sql=_spark_contributors_sql(contributions(True), keys, len(magnitudes), top_n),
        ),
        populations=populations,
        cells_per_hash=cells_per_hash,
        members=members,
        dispersions=tuple(name for name, _value in dispersions),
        dispersion_query=spread,
    )


# Dispersion aggregates: their dominance and p % are judged on squared deviations.
DISPERSIONS = (exp.Stddev, exp.StddevPop, exp.StddevSamp, exp.Variance, exp.VariancePop)


def _deviations(
    table: exp.Table,
    where: exp.Expr | None,
    groups: list[exp.Expr],
    unit: exp.Expr | None,
    values: list[tuple[str, exp.Expr]],
) -> exp.Select:
    """Per group (g0..) and unit (u): each unit's share of the sum of squared deviations.

    ``VAR(x)`` is Σ(x − mean)² / n over the group's rows, so a unit's contribution to it is
    the sum over its rows of (x − the group's mean)²; dominance and p % then ask whether a
    few units hold most of the spread (an outlier's value follows from the others'), exactly
    as for a SUM. The mean is a window over the rows the template counts.
    """
    keys = [f"g{i}" for i in range(len(groups))]
    rows = exp.select(
        *[exp.alias_(g.copy(), key) for g, key in zip(groups, keys, strict=True)],
        *([exp.alias_(unit.copy(), "u")] if unit is not None else []),
        *[exp.alias_(v.copy(), f"x{i}") for i, (_n, v) in enumerate(values)],
    ).from_(table.copy())
    if where is not None:
        rows = rows.where(where.this.copy())
    partition = f"PARTITION BY {', '.join(keys)}" if keys else ""
    centred = exp.select(
        *keys,
        *(["u"] if unit is not None else []),
        *[
            f"COALESCE(POWER(x{i} - AVG(x{i}) OVER ({partition}), 2), 0) AS d{i}"
            for i in range(len(values))
        ],
        dialect="duckdb",
    ).from_(exp.alias_(exp.Subquery(this=rows), "insitu_r"))
    if unit is None:
        return exp.select(
            *keys, *[f"d{i} AS m{i}" for i in range(len(values))], dialect="duckdb"
        ).from_(exp.alias_(exp.Subquery(this=centred), "insitu_d"))
    return (
        exp.select(
            *keys, "u", *[f"SUM(d{i}) AS m{i}" for i in range(len(values))], dialect="duckdb"
        )
        .from_(exp.alias_(exp.Subquery(this=centred), "insitu_d"))
        .group_by(*keys, "u")
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
    hashed = _hashed(keys)
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


def _hashed(keys: list[str]) -> exp.Select:
    """Per group and unit: the unit's keyed hash (``hash(hash(hash(u) XOR k1) XOR k2)``)."""
    k1, k2 = (f"CAST(${name} AS UBIGINT)" for name in POPULATION_KEYS)
    return exp.select(
        *keys, f"HASH(XOR(HASH(XOR(HASH(u), {k1})), {k2})) AS h", dialect="duckdb"
    ).from_("insitu_c")


def _spark_members_sql(inner: exp.Select, keys: list[str]) -> str:
    """``_members_sql`` for Spark: the keyed hash with Spark's ``xxhash64`` (as
    ``_spark_populations_sql``), each as 16 hex digits (``HEX`` of a BIGINT is its two's
    complement, i.e. the unsigned value ``hashes_from_hex`` reads)."""
    k1, k2 = (f"CAST(:{name} AS BIGINT)" for name in POPULATION_KEYS)
    prefix = "".join(f"{k}, " for k in keys)
    group = f" GROUP BY {', '.join(keys)}" if keys else ""
    return (
        f"WITH insitu_c AS ({inner.sql(dialect='spark', comments=False)}), "  # noqa: S608
        f"hashed AS (SELECT {prefix}XXHASH64(XXHASH64(XXHASH64(u) ^ {k1}) ^ {k2}) AS h "
        "FROM insitu_c) "
        f"SELECT {prefix}COUNT(*) AS n, "
        "CONCAT_WS('', COLLECT_LIST(LPAD(HEX(h), 16, '0'))) AS hashes, "
        f"CONCAT('{SPARK_SCHEME}', CAST(XXHASH64('{SCHEME_PROBE}') AS STRING)) AS scheme "
        f"FROM hashed{group}"
    )


def _members_sql(inner: exp.Select, keys: list[str]) -> str:
    """Per group: the keyed hashes of its units, as 16 hex digits each, and the hash scheme.

    One text per group keeps the transfer to ~16 bytes a unit with no per-row conversion;
    ``sandbox.disclosure.atoms.hashes_from_hex`` reads it back. The atom check uses the
    hashes, and the population sketches are computed from them
    (``DisclosureQueries.sketches_from_members``), so the ``populations`` query itself is
    not run by a job.
    """
    outer = exp.select(
        *keys,
        "COUNT(*) AS n",
        "STRING_AGG(LPAD(TO_HEX(h), 16, '0'), '') AS hashes",
        f"HASH('{SCHEME_PROBE}') AS scheme",
        dialect="duckdb",
    ).from_("hashed")
    if keys:
        outer = outer.group_by(*keys)
    outer = outer.with_("insitu_c", as_=inner).with_("hashed", as_=_hashed(keys))
    return outer.sql(dialect="duckdb", comments=False)


def _spark_contributors_sql(inner: exp.Select, keys: list[str], magnitudes: int, top_n: int) -> str:
    """``_contributors_sql`` for Spark: the top n of a group ranked by a window."""
    over = f"PARTITION BY {', '.join(keys)} " if keys else ""
    ranks = "".join(
        f", ROW_NUMBER() OVER ({over}ORDER BY ABS(m{i}) DESC) AS r{i}" for i in range(magnitudes)
    )
    outputs = [*keys, "COUNT(*) AS units"]
    for i in range(magnitudes):
        outputs.append(f"SUM(ABS(m{i})) AS total{i}")
        top = f"COLLECT_LIST(CASE WHEN r{i} <= {top_n} THEN ABS(m{i}) END)"
        outputs.append(f"SORT_ARRAY({top}, FALSE) AS top{i}")
    group = f" GROUP BY {', '.join(keys)}" if keys else ""
    return (
        f"WITH insitu_c AS ({inner.sql(dialect='spark', comments=False)}), "  # noqa: S608
        f"insitu_r AS (SELECT *{ranks} FROM insitu_c) "
        f"SELECT {', '.join(outputs)} FROM insitu_r{group}"
    )


def _spark_populations_sql(inner: exp.Select, keys: list[str], cells_per_hash: int) -> str:
    """``_populations_sql`` for Spark, with Spark's ``xxhash64`` (seed 42) as the hash.

    ``h = xxhash64(xxhash64(xxhash64(u) ^ k1) ^ k2)`` and the check ``xxhash64(h)``
    (``population.spark_check`` in Python); the cell of sub-table j is the *unsigned* h
    shifted by 21·j modulo ``cells_per_hash``, as ``population.cells_of`` computes it (h is
    a signed BIGINT here: its unsigned remainder is taken from h >>> 1 and its low bit).
    ``scheme`` names the hash, so these sketches never meet DuckDB's.
    """
    k1, k2 = (f"CAST(:{name} AS BIGINT)" for name in POPULATION_KEYS)
    c = cells_per_hash
    prefix = "".join(f"{k}, " for k in keys)
    indices = []
    for j in range(HASHES):
        if j == 0:
            index = f"PMOD(PMOD(SHIFTRIGHTUNSIGNED(h, 1), {c}) * 2 + (h & 1), {c})"
        else:
            index = f"PMOD(SHIFTRIGHTUNSIGNED(h, {j * SHIFT}), {c})"
        indices.append(f"{j * c} + {index}")
    # One pass: each unit's three cells by EXPLODE (in Spark a union of three aggregates
    # read and shuffled the rows three times).
    return (
        f"WITH insitu_c AS ({inner.sql(dialect='spark', comments=False)}), "  # noqa: S608
        f"hashed AS (SELECT {prefix}XXHASH64(XXHASH64(XXHASH64(u) ^ {k1}) ^ {k2}) AS h "
        "FROM insitu_c), "
        f"checked AS (SELECT {prefix}h, XXHASH64(h) AS chk, "
        f"EXPLODE(ARRAY({', '.join(indices)})) AS cell FROM hashed) "
        f"SELECT {prefix}cell, COUNT(*) AS n, BIT_XOR(h) AS keys, BIT_XOR(chk) AS checks, "
        f"CONCAT('{SPARK_SCHEME}', CAST(XXHASH64('{SCHEME_PROBE}') AS STRING)) AS scheme "
        f"FROM checked GROUP BY {prefix}cell"
    )


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
