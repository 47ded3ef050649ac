"""DP templates: the declarative query and the bounded-contribution plan the engine runs.

A ``DpPlan`` is what a ``dp`` template says (validated on construction). ``compile_dp`` turns it
into a ``CompiledQuery`` whose SQL, written here and never from user text:

1. reads one dataset, keeps rows whose privacy unit is not NULL and that pass the filters
   (``column op $parameter``; values are always bound, never spliced);
2. clamps every numeric measure to its declared bounds (``LEAST(GREATEST(x, lo), hi)``), as
   fixed-point integers for non-integer columns so every sum is exact; a mean sums its
   values centred on the middle of the bounds (as ``2·x − (lo + hi)``), which halves the
   sensitivity of its sum;
3. bounds each unit's contribution: at most ``rows_per_unit`` rows in total (a ``ROW_NUMBER``
   over the unit in random order) and, when smaller, at most ``groups_per_unit`` groups
   (a ``DENSE_RANK`` of the unit's group keys);
4. aggregates exactly per group: the row count (only where a count is released or keys
   are selected: a result carries no more than the release needs), per measure the clamped
   sum, the count of non-NULL values, one count per histogram bin, or for a quantile the
   counts of values below and above each candidate (from which the quantile scores follow).

The clamp is ``LEAST(GREATEST(…))`` on purpose: DuckDB folds the branches of an equivalent
``CASE WHEN x < lo …`` away when a file's column statistics say no value lies outside the
bounds, so a file whose statistics understate its values (a buggy writer; pyarrow leaves NaN
out of min/max) would have them summed unclamped, and timing would tell whether a column's
extremes lie within the bounds. Non-integer columns are scaled in DOUBLE (a FLOAT's 24 bits
would round a clamped value past its bound).

Sensitivities follow from step 3 alone (see ``sandbox/dp/measure.py``): one unit changes at
most R rows in total, spread over at most min(G, R) groups. Identifiers come from the
catalogue, are checked against ``COLUMN_NAME`` and quoted; bounds and bin edges are validated
numbers of the approved template.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction

from sandbox.compile.query import CompiledQuery, TemplateKind
from sandbox.errors import TemplateRejected
from sandbox.params.spec import PARAMETER_NAME
from sandbox.schema import COLUMN_NAME

MAX_BOUND = 10**12
MAX_ROWS_PER_UNIT = 1000
FIXED_POINT = 1000  # non-integer columns are summed in thousandths, exactly
CONSTANT_PREFIX = "dpconst_"
INTEGER_TYPES = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "INT", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT"}
    | {"UINTEGER", "UBIGINT"}
)
FLOAT_TYPES = frozenset({"FLOAT", "REAL", "DOUBLE"})
OPERATORS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


class MeasureKind(StrEnum):
    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"
    HISTOGRAM = "histogram"
    QUANTILE = "quantile"  # alpha 0.5: the median


class Noise(StrEnum):
    LAPLACE = "laplace"  # cost in ε (pure DP), booked as ρ = ε²/2
    GAUSSIAN = "gaussian"  # cost in ρ (zCDP)


@dataclass(frozen=True, slots=True)
class DpFilter:
    """``column op :parameter``, or ``column op value`` with a constant bound as a parameter."""

    column: str
    op: str
    parameter: str | None = None
    value: str | int | None = None

    def __post_init__(self) -> None:
        if not COLUMN_NAME.fullmatch(self.column):
            raise TemplateRejected("a filter names a column by its plain name")
        if self.op not in OPERATORS:
            raise TemplateRejected(f"filter operator must be one of {', '.join(OPERATORS)}")
        if (self.parameter is None) == (self.value is None):
            raise TemplateRejected("a filter compares with either a parameter or a value")
        if self.parameter is not None and (
            not PARAMETER_NAME.fullmatch(self.parameter)
            or self.parameter.startswith(CONSTANT_PREFIX)
        ):
            raise TemplateRejected(f"filter parameter {self.parameter[:80]!r} is not a valid name")
        if self.value is not None and not (isinstance(self.value, str) or type(self.value) is int):
            raise TemplateRejected("a filter value is a string or an integer")


@dataclass(frozen=True, slots=True)
class DpMeasure:
    name: str
    kind: MeasureKind
    column: str | None = None
    lower: Fraction | None = None
    upper: Fraction | None = None
    bins: tuple[Fraction, ...] = ()  # histogram edges, or quantile candidates
    alpha: Fraction | None = None  # quantile: 0.5 is the median

    def __post_init__(self) -> None:  # noqa: PLR0912
        if not PARAMETER_NAME.fullmatch(self.name):
            raise TemplateRejected(f"measure name {self.name[:80]!r} must be lowercase and '_'")
        object.__setattr__(self, "kind", MeasureKind(self.kind))
        if self.kind is MeasureKind.COUNT:
            if self.column is not None or self.lower is not None or self.bins:
                raise TemplateRejected(f"measure {self.name}: count takes no column or bounds")
            return
        if self.column is None or not COLUMN_NAME.fullmatch(self.column):
            raise TemplateRejected(f"measure {self.name}: {self.kind.value} needs a column")
        if self.kind is MeasureKind.QUANTILE:
            cands = self.bins
            if not 2 <= len(cands) <= 64 or list(cands) != sorted(set(cands)):
                raise TemplateRejected(f"measure {self.name}: 2 to 64 increasing candidates")
            if any(abs(c) > MAX_BOUND for c in cands):
                raise TemplateRejected(f"measure {self.name}: candidates exceed {MAX_BOUND}")
            if self.alpha is None or not 0 <= self.alpha <= 1 or self.alpha.denominator > 1000:
                raise TemplateRejected(f"measure {self.name}: alpha in [0, 1], e.g. 0.5")
            return
        if self.kind is MeasureKind.HISTOGRAM:
            edges = self.bins
            if not 2 <= len(edges) <= 101 or list(edges) != sorted(set(edges)):
                raise TemplateRejected(f"measure {self.name}: bins are 2 to 101 increasing edges")
            if any(abs(e) > MAX_BOUND for e in edges):
                raise TemplateRejected(f"measure {self.name}: bin edges exceed {MAX_BOUND}")
            return
        if self.lower is None or self.upper is None or not self.lower < self.upper:
            raise TemplateRejected(f"measure {self.name}: needs bounds with lower < upper")
        if max(abs(self.lower), abs(self.upper)) > MAX_BOUND:
            raise TemplateRejected(f"measure {self.name}: bounds exceed ±{MAX_BOUND}")

    @property
    def magnitude(self) -> Fraction:
        """The largest absolute value one clamped row contributes (in the column's units)."""
        assert self.lower is not None and self.upper is not None
        return max(abs(self.lower), abs(self.upper))


@dataclass(frozen=True, slots=True)
class DpBudget:
    """The cost of one run: ``epsilon`` (pure DP, Laplace) or ``rho`` (zCDP, Gaussian)."""

    epsilon: Fraction | None = None
    rho: Fraction | None = None

    def __post_init__(self) -> None:
        if (self.epsilon is None) == (self.rho is None):
            raise TemplateRejected("the cost is either epsilon or rho")
        value = self.epsilon if self.epsilon is not None else self.rho
        assert value is not None
        if not Fraction(1, 10**6) <= value <= 100:
            raise TemplateRejected("the cost must be between 0.000001 and 100")

    @property
    def noise(self) -> Noise:
        return Noise.LAPLACE if self.epsilon is not None else Noise.GAUSSIAN


@dataclass(frozen=True, slots=True)
class DpPlan:
    """A validated ``dp`` template against one catalogue dataset."""

    dataset_id: str
    unit: str
    rows_per_unit: int
    groups_per_unit: int
    filters: tuple[DpFilter, ...]
    group_by: tuple[str, ...]
    private_keys: bool
    delta: Fraction | None
    threshold: int | None
    measures: tuple[DpMeasure, ...]
    budget: DpBudget
    integer_columns: frozenset[str]

    def __post_init__(self) -> None:
        for name, value, high in (
            ("rows_per_unit", self.rows_per_unit, MAX_ROWS_PER_UNIT),
            ("groups_per_unit", self.groups_per_unit, MAX_ROWS_PER_UNIT),
        ):
            if type(value) is not int or not 1 <= value <= high:
                raise TemplateRejected(f"{name} must be an integer from 1 to {high}")
        if not self.measures or len(self.measures) > 20:
            raise TemplateRejected("a dp template has 1 to 20 measures")
        names = [m.name for m in self.measures] + list(self.group_by)
        if len(set(names)) != len(names):
            raise TemplateRejected("measure names and group-by columns must be distinct")
        if len(self.group_by) > 3 or len(set(self.group_by)) != len(self.group_by):
            raise TemplateRejected("group by at most 3 distinct columns")
        if self.private_keys:
            if not self.group_by:
                raise TemplateRejected("private key selection needs group-by columns")
            if self.delta is None or not 0 < self.delta < Fraction(1, 1000):
                raise TemplateRejected("private key selection needs a delta in (0, 0.001)")
            if self.budget.noise is not Noise.GAUSSIAN:
                raise TemplateRejected(
                    "private key selection is booked as approximate zCDP: give the cost as rho"
                )
            if self.threshold is not None and not 1 <= self.threshold <= 10**9:
                raise TemplateRejected("threshold must be an integer from 1 to 10^9")
        elif self.delta is not None or self.threshold is not None:
            raise TemplateRejected("delta and threshold belong to private key selection")

    @property
    def counts_rows(self) -> bool:
        """Whether the row count per group is released (a count measure, or key selection)."""
        return self.private_keys or any(m.kind is MeasureKind.COUNT for m in self.measures)

    @property
    def contributed_groups(self) -> int:
        """The most groups one unit can change after bounding."""
        return min(self.groups_per_unit, self.rows_per_unit)

    def fixed_point(self, measure: DpMeasure) -> int:
        """The factor a measure's values are scaled by to be summed as integers."""
        return 1 if measure.column in self.integer_columns else FIXED_POINT

    def constants(self) -> dict[str, str | int]:
        """The bound values of the template's constant filters (`dpconst_<i>`)."""
        return {
            f"{CONSTANT_PREFIX}{i}": f.value
            for i, f in enumerate(self.filters)
            if f.value is not None
        }


def _num(value: Fraction) -> str:
    """A validated bound as a SQL numeric literal."""
    if value.denominator == 1:
        return str(value.numerator)
    text = repr(float(value))
    if not math.isfinite(float(value)):
        raise TemplateRejected("bounds must be finite")
    return text


def _q(name: str, dialect: str = "duckdb") -> str:
    """A checked identifier, quoted for ``dialect`` (Spark quotes with backticks)."""
    if not COLUMN_NAME.fullmatch(name):
        raise TemplateRejected(f"{name[:80]!r} is not a plain identifier")
    return f"`{name}`" if dialect == "spark" else f'"{name}"'


def _measure_sql(
    plan: DpPlan, i: int, m: DpMeasure, inner: list[str], outer: list[str], *, dialect: str
) -> None:
    """The inner (per row) and outer (per group) expressions of measure ``i``."""
    if m.kind in (MeasureKind.SUM, MeasureKind.MEAN):
        assert m.column is not None and m.lower is not None and m.upper is not None
        k = plan.fixed_point(m)
        if (m.lower * k).denominator != 1 or (m.upper * k).denominator != 1:
            # ROUND of a value clamped to a fractional bound can pass the bound (0.5 → 1)
            raise TemplateRejected(f"measure {m.name}: bounds have at most 3 decimals")
        lo, hi = _num(m.lower * k), _num(m.upper * k)
        mid2 = _num((m.lower + m.upper) * k)  # lo + hi as one literal: no 32-bit overflow
        x = f"t.{_q(m.column, dialect)}"
        # A NULL value is clamped as the lower bound, then taken out again per group with
        # COUNT(x): the sum is over non-NULL values exactly, whatever the engine's GREATEST
        # does with NULL, and the engine can tell from column statistics that COUNT(x) is
        # COUNT(*) when the column has no NULL (one aggregate fewer).
        scaled = x if k == 1 else f"(CAST({x} AS DOUBLE) * {k})"
        clamped = f"LEAST(GREATEST(COALESCE({scaled}, {lo}), {lo}), {hi})"
        inner.append(f"{x} AS x{i}")
        nulls = f"(COUNT(*) - COUNT(x{i}))"
        if k == 1:  # integers: Σ(2·x − (lo + hi)) = 2·Σx − (lo + hi)·n exactly, per group
            inner.append(f"CAST({clamped} AS BIGINT) AS v{i}")
            total = f"(SUM(v{i}) - {lo} * {nulls})"
            if m.kind is MeasureKind.MEAN:
                total = f"2 * {total} - {mid2} * COUNT(x{i})"
        else:  # fixed point, rounded per row; a mean centred and doubled: 2·x − (lo + hi)
            null_value = m.lower * k
            if m.kind is MeasureKind.MEAN:
                clamped = f"2 * {clamped} - {mid2}"
                null_value = (m.lower - m.upper) * k
            inner.append(f"CAST(ROUND({clamped}) AS BIGINT) AS v{i}")
            total = f"(SUM(v{i}) - ({_num(null_value)}) * {nulls})"
        outer.append(f"{total} AS s{i}")
        outer.append(f"COUNT(x{i}) AS c{i}")
    elif m.kind is MeasureKind.QUANTILE:
        assert m.column is not None
        inner.append(f"t.{_q(m.column, dialect)} AS v{i}")
        for j, c in enumerate(m.bins):
            outer.append(f"COUNT(*) FILTER (WHERE v{i} < {_num(c)}) AS q{i}_lt{j}")
            outer.append(f"COUNT(*) FILTER (WHERE v{i} > {_num(c)}) AS q{i}_gt{j}")
    elif m.kind is MeasureKind.HISTOGRAM:
        assert m.column is not None
        inner.append(f"t.{_q(m.column, dialect)} AS v{i}")
        edges = m.bins
        for b in range(len(edges) - 1):
            conds = [f"v{i} IS NOT NULL"]
            if b > 0:
                conds.append(f"v{i} >= {_num(edges[b])}")
            if b < len(edges) - 2:
                conds.append(f"v{i} < {_num(edges[b + 1])}")
            outer.append(f"COUNT(*) FILTER (WHERE {' AND '.join(conds)}) AS h{i}_{b}")


def group_window(plan: DpPlan) -> bool:
    """Whether the plan bounds groups per unit with a window of its own (else rows bound it)."""
    return bool(plan.group_by) and plan.groups_per_unit < plan.rows_per_unit


def no_op_limit(plan: DpPlan) -> int:
    """The most rows per unit for which the per-unit windows keep every row: filters only
    remove rows, and a unit's rows span at most as many groups as it has rows, so when no
    non-NULL unit of the source has more, ``ROW_NUMBER <= R`` and ``DENSE_RANK <= G`` hold
    for every row that reaches them."""
    if group_window(plan):
        return min(plan.rows_per_unit, plan.groups_per_unit)
    return plan.rows_per_unit


def windows_are_no_ops(plan: DpPlan, max_rows_per_unit: int) -> bool:
    """Whether the windows are no-ops on a source whose units have at most that many rows."""
    if type(max_rows_per_unit) is not int or max_rows_per_unit < 0:
        return False
    return max_rows_per_unit <= no_op_limit(plan)


def plan_sql(
    plan: DpPlan, dialect: str, *, bounded: bool = True, units_not_null: bool = False
) -> str:
    """The bounded-contribution aggregate for ``dialect`` ``duckdb`` ($name) or ``spark``.

    ``bounded=False`` leaves out the per-unit windows (clamping stays), ``units_not_null``
    the ``unit IS NOT NULL`` filter. Only ``sandbox.dp.snapshot`` runs such a plan, and only on
    a source snapshot it has verified, in the reading process, to have no unit over the bounds
    (``windows_are_no_ops``) and, for the second, no row without a unit."""
    mark = "$" if dialect == "duckdb" else ":"
    rand = "random()" if dialect == "duckdb" else "rand()"
    dept, name = plan.dataset_id.split(".")
    inner = [f"t.{_q(plan.unit, dialect)} AS u"] + ([f"{rand} AS rk"] if bounded else [])
    inner += [f"t.{_q(c, dialect)} AS g{i}" for i, c in enumerate(plan.group_by)]
    outer = [f"g{i} AS {_q(c, dialect)}" for i, c in enumerate(plan.group_by)]
    if plan.counts_rows:
        outer.append("COUNT(*) AS n")
    for i, m in enumerate(plan.measures):
        _measure_sql(plan, i, m, inner, outer, dialect=dialect)
    table = f"{_q(dept, dialect)}.{_q(name, dialect)}"
    where = [] if units_not_null and not bounded else [f"t.{_q(plan.unit, dialect)} IS NOT NULL"]
    for i, f in enumerate(plan.filters):
        bound = f.parameter if f.parameter is not None else f"{CONSTANT_PREFIX}{i}"
        where.append(f"t.{_q(f.column, dialect)} {OPERATORS[f.op]} {mark}{bound}")
    ranked = "f"
    groups = ""
    if group_window(plan):
        keys = ", ".join(f"g{i}" for i in range(len(plan.group_by)))
        hashed = f"hash({keys})" if dialect == "duckdb" else f"xxhash64({keys})"
        groups = (
            f"k AS (SELECT * FROM (SELECT *, DENSE_RANK() OVER (PARTITION BY u ORDER BY "  # noqa: S608
            f"{hashed}, {keys}) AS gr FROM f) AS r WHERE gr <= {plan.groups_per_unit}), "
        )
        ranked = "k"
    group = ""
    if plan.group_by:
        group = " GROUP BY " + ", ".join(f"g{i}" for i in range(len(plan.group_by)))
    if not bounded:
        return (
            f"WITH f AS (SELECT {', '.join(inner)} FROM {table} AS t "  # noqa: S608
            f"WHERE {' AND '.join(where) or 'TRUE'}) SELECT {', '.join(outer)} FROM f{group}"
        )
    return (
        f"WITH f AS (SELECT {', '.join(inner)} FROM {table} AS t "  # noqa: S608
        f"WHERE {' AND '.join(where) or 'TRUE'}), {groups}"
        f"b AS (SELECT *, ROW_NUMBER() OVER (PARTITION BY u ORDER BY rk) AS rn FROM {ranked}) "
        f"SELECT {', '.join(outer)} FROM b WHERE rn <= {plan.rows_per_unit}{group}"
    )


def output_columns(plan: DpPlan) -> tuple[str, ...]:
    out = [*plan.group_by, *(["n"] if plan.counts_rows else [])]
    for i, m in enumerate(plan.measures):
        if m.kind in (MeasureKind.SUM, MeasureKind.MEAN):
            out += [f"s{i}", f"c{i}"]
        elif m.kind is MeasureKind.HISTOGRAM:
            out += [f"h{i}_{b}" for b in range(len(m.bins) - 1)]
        elif m.kind is MeasureKind.QUANTILE:
            out += [f"q{i}_{side}{j}" for j in range(len(m.bins)) for side in ("lt", "gt")]
    return tuple(out)


def compile_dp(
    plan: DpPlan,
    template_parameters: tuple[str, ...],
    *,
    bounded: bool = True,
    units_not_null: bool = False,
) -> CompiledQuery:
    """The plan as a CompiledQuery of kind DP (parameters: the template's and the constants).

    ``bounded=False`` and ``units_not_null`` (see ``plan_sql``) change the DuckDB SQL only:
    ``spark_sql`` stays the bounded plan (a Spark cluster's reads cannot be fingerprinted)."""
    used = {f.parameter for f in plan.filters if f.parameter is not None}
    unused = set(template_parameters) - used
    if unused:
        raise TemplateRejected(f"parameters not used by any filter: {', '.join(sorted(unused))}")
    missing = used - set(template_parameters)
    if missing:
        raise TemplateRejected(f"filters use undeclared parameters: {', '.join(sorted(missing))}")
    outputs = output_columns(plan)
    return CompiledQuery(
        kind=TemplateKind.DP,
        source_sql=plan_sql(plan, "duckdb", bounded=bounded, units_not_null=units_not_null),
        duckdb_sql=plan_sql(plan, "duckdb", bounded=bounded, units_not_null=units_not_null),
        spark_sql=plan_sql(plan, "spark"),
        parameters=tuple(sorted(used | set(plan.constants()))),
        tables=(plan.dataset_id,),
        output_columns=outputs,
        count_column="n" if plan.counts_rows else None,
        group_columns=plan.group_by,
    )
