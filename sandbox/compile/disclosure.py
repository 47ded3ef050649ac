"""Derive the auxiliary queries disclosure control needs from a compiled AGGREGATE template.

The released table says how many rows each group has and what its sums are; it does not say
how many *units* (people, enterprises) contributed, how much the largest contributors hold,
or which units they were. Derived queries answer that, built from the template's own syntax
tree with sqlglot (same FROM, WHERE and GROUP BY expressions; parameters stay placeholders the
engine binds, nothing is spliced into text). All of them read the same per-(group, unit) rows
(``contributions``):

- ``census`` (with a unit column; what a job runs): per group, in one pass over those rows,
  the number of distinct units (``units``), for every magnitude output (``SUM``/``AVG`` of a
  column) the total of absolute contributions per unit and the top-n of them — for the
  dominance (n, k) and p % rules — and the keyed hashes of the units (``hashes``, 16 hex
  digits each) with the hash ``scheme`` — for the atom check and the population sketches,
  which the gateway makes from the hashes;
- ``contributors``: the census's figures without the hashes — what a job runs without a unit
  column (every row is then its own contributor, and there are no hashes), and the reference
  the census's figures are tested against;
- ``members``: the census's hashes without the figures, the reference its hashes are tested
  against;
- ``populations``: per group, an invertible Bloom lookup table (IBLT) of the keyed hashes —
  the population sketch the differencing defence compares across releases, computed in SQL;
  the reference the sketches made from the hashes are tested against. A unit's hash is
  DuckDB's ``hash`` applied in two rounds keyed with two secret words derived from a
  per-deployment secret (bound as parameters), so neither hashes nor sketches hold a
  re-identifiable id. (SHA-256 in SQL cost ~50x more per row.) Unit ``u`` is in three cells
  (one per sub-table of ``cells_per_hash`` cells); each cell holds the count, the XOR of the
  64-bit hashes and the XOR of a check value ``hash(h)`` (``population.check_of`` is the same
  function in Python);
- ``dispersions`` (with a STDDEV/VAR output): each unit's share of the squared deviations.

Each has a Spark rendering (the top n ranked by a window, the hash Spark's ``xxhash64``).

Threshold probes: an aggregate whose argument holds a parameter (``SUM(SIGN(x - :t))``)
turns a release into a conditional count chosen at run time, so it is refused here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

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
    """The derived disclosure queries of an AGGREGATE ``query`` (module docstring).

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
    populations = members = census = None
    if unit_expr is not None:
        populations, members, census = _unit_queries(
            contributions,
            keys,
            len(magnitudes),
            top_n=top_n,
            cells_per_hash=cells_per_hash,
            max_groups=max_groups,
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
            output_columns=_figure_columns(keys, len(dispersions)),
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
            output_columns=_figure_columns(keys, len(magnitudes)),
            max_rows=max_groups,
            spark_sql=_spark_contributors_sql(contributions(True), keys, len(magnitudes), top_n),
        ),
        populations=populations,
        cells_per_hash=cells_per_hash,
        members=members,
        census=census,
        dispersions=tuple(name for name, _value in dispersions),
        dispersion_query=spread,
    )


def _unit_queries(
    contributions: Callable[[bool], exp.Select],
    keys: list[str],
    magnitudes: int,
    *,
    top_n: int,
    cells_per_hash: int,
    max_groups: int,
) -> tuple[AuxiliaryQuery, AuxiliaryQuery, AuxiliaryQuery]:
    """With a unit column: the ``populations`` and ``members`` references and the ``census``
    a job runs. ``contributions(with_magnitudes)`` gives the per-(group, unit) rows; with and
    without the magnitudes they are the same rows (same FROM, WHERE and GROUP BY)."""
    populations_sql = _populations_sql(contributions(False), keys, cells_per_hash)
    members_sql = _members_sql(contributions(False), keys)
    census_sql = _census_sql(contributions(True), keys, magnitudes, top_n)
    return (
        AuxiliaryQuery(
            name="populations",
            duckdb_sql=populations_sql,
            parameters=_parameters(populations_sql, extra=POPULATION_KEYS),
            output_columns=(*keys, "cell", "n", "keys", "checks", "scheme"),
            max_rows=max_groups * HASHES * cells_per_hash,
            spark_sql=_spark_populations_sql(contributions(False), keys, cells_per_hash),
        ),
        AuxiliaryQuery(
            name="members",
            duckdb_sql=members_sql,
            parameters=_parameters(members_sql, extra=POPULATION_KEYS),
            output_columns=(*keys, "units", "hashes", "scheme"),
            max_rows=max_groups,
            spark_sql=_spark_members_sql(contributions(False), keys),
        ),
        AuxiliaryQuery(
            name="census",
            duckdb_sql=census_sql,
            parameters=_parameters(census_sql, extra=POPULATION_KEYS),
            output_columns=(*_figure_columns(keys, magnitudes), "hashes", "scheme"),
            max_rows=max_groups,
            spark_sql=_spark_census_sql(contributions(True), keys, magnitudes, top_n),
        ),
    )


def _figure_columns(keys: list[str], magnitudes: int) -> tuple[str, ...]:
    """The columns of the contributor figures (``_figure_outputs``)."""
    figures = (f"{kind}{i}" for i in range(magnitudes) for kind in ("total", "top"))
    return (*keys, "units", *figures)


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
    return _base_table(query.source_sql)


@functools.lru_cache(maxsize=1024)
def _base_table(source_sql: str) -> str:
    """``base_table`` by the template's text (parsed once: sqlglot costs ~1 ms a job)."""
    source = _parse(source_sql).args.get("from_")
    if not isinstance(source, exp.From) or not isinstance(source.this, exp.Table):
        raise SandboxBug("an aggregate template reads one table")
    return f"{source.this.db}.{source.this.name}".lower()


def _figure_outputs(keys: list[str], magnitudes: int, top_n: int) -> list[str]:
    """The contributor figures over per-unit rows (``m0``..): per group the units, and per
    magnitude the absolute total and the top n contributions (DuckDB's ``MAX(x, n)``: the n
    largest, a list)."""
    outputs = [*keys, "COUNT(*) AS units"]
    for i in range(magnitudes):
        outputs.append(f"SUM(ABS(m{i})) AS total{i}")
        outputs.append(f"MAX(ABS(m{i}), {top_n}) AS top{i}")
    return outputs


# Each group's keyed unit hashes as one text, 16 hex digits a unit: no per-row conversion; the
# engine packs it as 8 bytes a unit (``auxiliary.pack_member_hashes``) where it runs; ``scheme``
# is ``hash`` of a fixed text, so sketches made by a DuckDB whose hash function differs are
# never compared with these.
_HASHES = "STRING_AGG(LPAD(TO_HEX(h), 16, '0'), '') AS hashes"
_SCHEME = f"HASH('{SCHEME_PROBE}') AS scheme"


def _contributors_sql(inner: exp.Select, keys: list[str], magnitudes: int, top_n: int) -> str:
    """Per group: units, and per magnitude the absolute total and the top n contributions."""
    outer = (
        exp.select(*_figure_outputs(keys, magnitudes, top_n), dialect="duckdb")
        .from_("insitu_c")
        .with_("insitu_c", as_=inner)
    )
    if keys:
        outer = outer.group_by(*keys)
    return outer.sql(dialect="duckdb", comments=False)


def _census_sql(inner: exp.Select, keys: list[str], magnitudes: int, top_n: int) -> str:
    """``_contributors_sql`` and ``_members_sql`` in one pass over the per-unit rows: each
    row keeps its magnitudes and gains its unit's keyed hash, and one GROUP BY gives both."""
    outer = exp.select(
        *_figure_outputs(keys, magnitudes, top_n), _HASHES, _SCHEME, dialect="duckdb"
    ).from_("hashed")
    if keys:
        outer = outer.group_by(*keys)
    outer = outer.with_("insitu_c", as_=inner).with_("hashed", as_=_hashed(["*"]))
    return outer.sql(dialect="duckdb", comments=False)


def _members_sql(inner: exp.Select, keys: list[str]) -> str:
    """Per group: the number of units, their keyed hashes (16 hex digits each), the scheme."""
    outer = exp.select(*keys, "COUNT(*) AS units", _HASHES, _SCHEME, dialect="duckdb").from_(
        "hashed"
    )
    if keys:
        outer = outer.group_by(*keys)
    outer = outer.with_("insitu_c", as_=inner).with_("hashed", as_=_hashed(keys))
    return outer.sql(dialect="duckdb", comments=False)


def _populations_sql(inner: exp.Select, keys: list[str], cells_per_hash: int) -> str:
    """Per group and IBLT cell: the count, XOR of keyed unit hashes and XOR of check values.

    A unit's hash is ``hash(hash(hash(u) XOR k1) XOR k2)`` with DuckDB's ``hash`` (MurmurHash
    finaliser on integers; k1 and k2 are bound parameters), the check value ``hash(h)``
    (``population.check_of`` in Python). Every text below is a constant or a generated
    column name.
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
                _SCHEME,
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


def _hashed(columns: list[str]) -> exp.Select:
    """``columns`` of the per-unit rows and the unit's keyed hash
    (``hash(hash(hash(u) XOR k1) XOR k2)``, the keys bound as parameters)."""
    k1, k2 = (f"CAST(${name} AS UBIGINT)" for name in POPULATION_KEYS)
    return exp.select(
        *columns, f"HASH(XOR(HASH(XOR(HASH(u), {k1})), {k2})) AS h", dialect="duckdb"
    ).from_("insitu_c")


# Spark: the keyed hash with Spark's ``xxhash64`` (seed 42) in place of DuckDB's ``hash``,
# the keys bound as signed BIGINTs; ``HEX`` of a BIGINT is its two's complement, i.e. the
# unsigned value ``pack_member_hashes`` reads; ``scheme`` names the hash, so Spark's hashes and
# sketches never meet DuckDB's.
_SPARK_KEYED_HASH = "XXHASH64(XXHASH64(XXHASH64(u) ^ {k1}) ^ {k2}) AS h".format(
    k1=f"CAST(:{POPULATION_KEYS[0]} AS BIGINT)", k2=f"CAST(:{POPULATION_KEYS[1]} AS BIGINT)"
)
_SPARK_HASHES = "CONCAT_WS('', COLLECT_LIST(LPAD(HEX(h), 16, '0'))) AS hashes"
_SPARK_SCHEME = f"CONCAT('{SPARK_SCHEME}', CAST(XXHASH64('{SCHEME_PROBE}') AS STRING)) AS scheme"


def _spark_figure_outputs(keys: list[str], magnitudes: int, top_n: int) -> tuple[str, list[str]]:
    """``_figure_outputs`` for Spark: the window ranks to add to the per-unit rows (the top n
    of a group ranked by a window), and the outputs over the ranked rows."""
    over = f"PARTITION BY {', '.join(keys)} " if keys else ""
    ranks = "".join(
        f", ROW_NUMBER() OVER ({over}ORDER BY ABS(m{i}) DESC) AS r{i}" for i in range(magnitudes)
    )
    outputs = [*keys, "COUNT(*) AS units"]
    for i in range(magnitudes):
        outputs.append(f"SUM(ABS(m{i})) AS total{i}")
        top = f"COLLECT_LIST(CASE WHEN r{i} <= {top_n} THEN ABS(m{i}) END)"
        outputs.append(f"SORT_ARRAY({top}, FALSE) AS top{i}")
    return ranks, outputs


def _spark_contributors_sql(inner: exp.Select, keys: list[str], magnitudes: int, top_n: int) -> str:
    """``_contributors_sql`` for Spark."""
    ranks, outputs = _spark_figure_outputs(keys, magnitudes, top_n)
    group = f" GROUP BY {', '.join(keys)}" if keys else ""
    return (
        f"WITH insitu_c AS ({inner.sql(dialect='spark', comments=False)}), "  # noqa: S608
        f"insitu_r AS (SELECT *{ranks} FROM insitu_c) "
        f"SELECT {', '.join(outputs)} FROM insitu_r{group}"
    )


def _spark_census_sql(inner: exp.Select, keys: list[str], magnitudes: int, top_n: int) -> str:
    """``_census_sql`` for Spark: the per-unit rows hashed, ranked, then one GROUP BY."""
    ranks, outputs = _spark_figure_outputs(keys, magnitudes, top_n)
    group = f" GROUP BY {', '.join(keys)}" if keys else ""
    return (
        f"WITH insitu_c AS ({inner.sql(dialect='spark', comments=False)}), "  # noqa: S608
        f"hashed AS (SELECT *, {_SPARK_KEYED_HASH} FROM insitu_c), "
        f"insitu_r AS (SELECT *{ranks} FROM hashed) "
        f"SELECT {', '.join(outputs)}, {_SPARK_HASHES}, {_SPARK_SCHEME} FROM insitu_r{group}"
    )


def _spark_members_sql(inner: exp.Select, keys: list[str]) -> str:
    """``_members_sql`` for Spark."""
    prefix = "".join(f"{k}, " for k in keys)
    group = f" GROUP BY {', '.join(keys)}" if keys else ""
    return (
        f"WITH insitu_c AS ({inner.sql(dialect='spark', comments=False)}), "  # noqa: S608
        f"hashed AS (SELECT {prefix}{_SPARK_KEYED_HASH} FROM insitu_c) "
        f"SELECT {prefix}COUNT(*) AS units, {_SPARK_HASHES}, {_SPARK_SCHEME} FROM hashed{group}"
    )


def _spark_populations_sql(inner: exp.Select, keys: list[str], cells_per_hash: int) -> str:
    """``_populations_sql`` for Spark, with Spark's ``xxhash64`` (seed 42) as the hash.

    ``h = xxhash64(xxhash64(xxhash64(u) ^ k1) ^ k2)`` and the check ``xxhash64(h)``
    (``population.spark_check`` in Python); the cell of sub-table j is the *unsigned* h
    shifted by 21·j modulo ``cells_per_hash``, as ``population.cells_of`` computes it (h is
    a signed BIGINT here: its unsigned remainder is taken from h >>> 1 and its low bit).
    """
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
        f"hashed AS (SELECT {prefix}{_SPARK_KEYED_HASH} FROM insitu_c), "
        f"checked AS (SELECT {prefix}h, XXHASH64(h) AS chk, "
        f"EXPLODE(ARRAY({', '.join(indices)})) AS cell FROM hashed) "
        f"SELECT {prefix}cell, COUNT(*) AS n, BIT_XOR(h) AS keys, BIT_XOR(chk) AS checks, "
        f"{_SPARK_SCHEME} FROM checked GROUP BY {prefix}cell"
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
