"""Rules that keep an AGGREGATE template from releasing row-level values.

They run on the copy qualified against the catalogue (every column resolved to its table),
after the shape and identifier-lineage checks of ``compile_shape``:

- ``check_row_source``: ``COUNT(*)`` counts rows of one base table. No JOIN of any kind
  (explicit, comma list, CROSS, LATERAL), no UNION/INTERSECT/EXCEPT, no CTE, no derived
  table; subqueries only inside WHERE (EXISTS / NOT EXISTS / IN (subquery) semi-joins).
- ``check_aggregate_functions``: no aggregate returning a list or string of row values
  (ARRAY_AGG, STRING_AGG, GROUP_CONCAT, COLLECT_SET, …); no conditional aggregate (FILTER,
  COUNT_IF, CASE/IF or a condition inside an aggregate), since a condition carves out a
  sub-group the minimum group size never sees; COUNT takes ``*`` or plain columns only;
  MIN/MAX and the other single-value picks (ANY_VALUE, FIRST, LAST, ARG_MAX, MODE, MEDIAN,
  QUANTILE, FIRST_VALUE, LAG, …) only of ``public`` columns. Inside an aggregate, a
  column that is not ``public`` appears only in a *linear* expression (``x``, ``a·x + b``,
  ``x / a``, a plain CAST of it): any other function of it — ``SIGN(x − 150000000)``,
  ``LEAST``/``GREATEST``, ``FLOOR``/``ROUND``, ``ABS``, a CAST of an expression, a product
  of two such columns — is a step or a power of the value, so the aggregate counts units
  past a constant threshold (a conditional count) or gives power sums that recover values.
- ``check_identifier_parameters``: a parameter is never compared with (or otherwise put
  in one expression with) an ``identifier`` column: targeted lookups are for ``verify``.
- ``check_parameter_columns``: a parameter is matched (``=``, ``<>``, ``IN``, ``LIKE``, …)
  only against ``public`` columns: quasi-identifiers and sensitive values have too many
  distinct values to be picked one at a time (ranges on them remain allowed).

A column whose table cannot be resolved is treated as the most sensitive kind.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from sqlglot import exp
from sqlglot.optimizer.scope import Scope

from sandbox.errors import TemplateRejected
from sandbox.schema import Sensitivity, TableSchema


def _classes(*names: str) -> tuple[type[exp.Expr], ...]:
    """The sqlglot classes of these names that this sqlglot version defines."""
    found = (getattr(exp, name, None) for name in names)
    return tuple(c for c in found if isinstance(c, type) and issubclass(c, exp.Expr))


# Aggregates whose result is one number/boolean over the whole group.
_GROUP_STATISTICS = _classes(
    "Count", "Sum", "Avg", "Stddev", "StddevPop", "StddevSamp", "Variance", "VariancePop",
    "ApproxDistinct", "Corr", "CovarPop", "CovarSamp", "LogicalAnd", "LogicalOr",
)  # fmt: skip
# Aggregates (and window functions) that return one contributor's value.
_PICKS_ONE_VALUE = _classes(
    "Min", "Max", "AnyValue", "First", "Last", "ArgMax", "ArgMin", "Mode", "Median",
    "Quantile", "ApproxQuantile", "PercentileCont", "PercentileDisc", "FirstValue",
    "LastValue", "NthValue", "Lag", "Lead",
)  # fmt: skip
# Aggregates that return a collection or a string of row values.
_COLLECTIONS = _classes(
    "ArrayAgg", "GroupConcat", "ArrayUniqueAgg", "ArrayConcatAgg", "ArrayUnionAgg", "List",
    "JSONArrayAgg", "JSONObjectAgg", "JSONBObjectAgg", "ObjectAgg", "Histogram",
)  # fmt: skip
# Constructs that make an aggregate conditional on a per-row test.
_CONDITIONS = (exp.Case, exp.If, exp.Nullif, exp.Predicate, exp.Connector, exp.Not)
# Nodes that may combine a parameter test with an identifier test (they only join them).
_CLAUSES = (
    exp.Connector,
    exp.Not,
    exp.Paren,
    exp.Where,
    exp.Having,
    exp.Qualify,
    exp.Query,
    exp.Subquery,
    exp.Exists,
    exp.From,
    exp.Group,
    exp.Order,
    exp.Ordered,
    exp.Alias,
)


def check_row_source(root: Scope) -> None:
    """Refuse anything that can multiply or mix rows: COUNT(*) counts one base table."""
    select = root.expression
    for node in select.walk():
        if isinstance(node, exp.Join | exp.Lateral):
            raise TemplateRejected(
                "aggregate templates may not JOIN (explicit, comma-separated, CROSS or "
                "LATERAL): a join multiplies rows, so groups could pass the minimum size "
                "with fewer contributors; compare departments with EXISTS or IN (subquery) "
                "in WHERE"
            )
        if isinstance(node, exp.With | exp.CTE):
            raise TemplateRejected(
                "aggregate templates may not use CTEs (WITH); read one catalogue table and "
                "put cross-department conditions in WHERE (EXISTS / IN)"
            )
        if isinstance(node, exp.Union | exp.Intersect | exp.Except):
            raise TemplateRejected(
                "aggregate templates may not use UNION, INTERSECT or EXCEPT: COUNT(*) must "
                "count rows of one base table"
            )
        if isinstance(node, exp.Subquery) and isinstance(node.parent, exp.From | exp.Join):
            raise TemplateRejected(
                "aggregate templates may not read a derived table (subquery in FROM): "
                "COUNT(*) must count rows of one base table"
            )
    source = select.args.get("from_") or select.args.get("from")
    if not isinstance(source, exp.From) or not isinstance(source.this, exp.Table):
        raise TemplateRejected("an aggregate template reads exactly one catalogue table")
    where = select.args.get("where")
    for node in select.walk():
        if node is select or not isinstance(node, exp.Query | exp.Subquery):
            continue
        if where is None or not _inside(node, where):
            raise TemplateRejected(
                "aggregate templates may use subqueries only inside WHERE (EXISTS, NOT "
                "EXISTS, IN (subquery)); a subquery in the SELECT list, GROUP BY, HAVING or "
                "ORDER BY is not covered by the minimum group size"
            )


def check_aggregate_functions(root: Scope, tables: Mapping[str, TableSchema]) -> None:
    """Refuse collection, conditional and single-value aggregates that reveal rows."""
    resolver = _Resolver(root, tables)
    for node in root.expression.walk():
        if isinstance(node, exp.Filter):
            raise TemplateRejected(
                "aggregate templates may not use FILTER (WHERE …) on aggregates: the filtered "
                "sub-group escapes the minimum group size; put conditions in WHERE"
            )
        if isinstance(node, _COLLECTIONS):
            raise TemplateRejected(
                f"{_name(node)} is not allowed in aggregate templates: it returns a list or "
                "string of row values (ARRAY_AGG, STRING_AGG, GROUP_CONCAT, LIST, …)"
            )
        if isinstance(node, exp.CountIf):
            raise TemplateRejected(
                "COUNT_IF is not allowed in aggregate templates: a conditional count covers a "
                "sub-group the minimum group size never sees; put conditions in WHERE"
            )
        if not isinstance(node, exp.AggFunc):
            continue
        if not isinstance(node, _GROUP_STATISTICS + _PICKS_ONE_VALUE):
            raise TemplateRejected(f"{_name(node)} is not allowed in aggregate templates")
        _check_arguments(node, resolver)
        if isinstance(node, exp.Count):
            _check_count(node)
        if isinstance(node, _PICKS_ONE_VALUE):
            for column in _columns(node):
                sensitivity = resolver.sensitivity(column)
                if sensitivity is not Sensitivity.PUBLIC:
                    kind = sensitivity.value if sensitivity else "unknown"
                    raise TemplateRejected(
                        f"{_name(node)} of {column.name} ({kind}) is not allowed in aggregate "
                        "templates: it releases one contributor's exact value; MIN/MAX, "
                        "ANY_VALUE, FIRST/LAST, ARG_MAX, MODE, MEDIAN, QUANTILE are for "
                        "public columns only"
                    )


def check_identifier_parameters(root: Scope, tables: Mapping[str, TableSchema]) -> None:
    """Refuse a parameter combined with an identifier column (a targeted lookup).

    Every expression except boolean connectives and clauses (AND/OR/NOT, WHERE, the SELECT
    itself, …) may not contain both a parameter and an identifier column: that catches
    ``=``, ``IN``, ``<>``, ``LIKE``, ``BETWEEN``, ``CASE id WHEN :p``, ``LOWER(id) = :p`` and
    the like. A subquery operand contributes its SELECT list (``id IN (SELECT :p)``).
    """
    resolver = _Resolver(root, tables)
    for scope in root.traverse():
        _parameter_and_identifier(scope.expression, resolver)


def _parameter_and_identifier(
    node: exp.Expr, resolver: _Resolver
) -> tuple[bool, exp.Column | None]:
    """Whether ``node`` holds a parameter, and an identifier column it holds (if any)."""
    if isinstance(node, exp.Placeholder):
        return True, None
    if isinstance(node, exp.Column):
        sensitivity = resolver.sensitivity(node)
        return False, node if sensitivity in (Sensitivity.IDENTIFIER, None) else None
    parameter, identifier = False, None
    for child in node.iter_expressions():
        if isinstance(child, exp.Query | exp.Subquery) and child is not node:
            query = child.this if isinstance(child, exp.Subquery) else child
            values = query.selects if isinstance(query, exp.Query) else [query]
        else:
            values = [child]
        for value in values:
            has_parameter, column = _parameter_and_identifier(value, resolver)
            parameter = parameter or has_parameter
            identifier = identifier or column
    if parameter and identifier is not None and not isinstance(node, _CLAUSES):
        raise TemplateRejected(
            f"a parameter is compared with {identifier.name}, an identifier column: "
            "aggregate and list templates may not look up chosen records (parameters on "
            "identifier columns are for verify templates)"
        )
    return parameter, identifier


_MATCHES = (exp.EQ, exp.NEQ, exp.NullSafeEQ, exp.NullSafeNEQ, exp.In, exp.Like, exp.ILike,
            exp.RegexpLike)  # fmt: skip


def check_parameter_columns(root: Scope, tables: Mapping[str, TableSchema]) -> None:
    """Refuse a parameter matched for equality against a non-public (high-cardinality) column."""
    resolver = _Resolver(root, tables)
    for node in root.expression.walk():
        if not isinstance(node, _MATCHES):
            continue
        operands = [n for n in _walk_local(node) if n is not node]
        if not any(isinstance(n, exp.Placeholder) for n in operands):
            continue
        for column in (n for n in operands if isinstance(n, exp.Column)):
            sensitivity = resolver.sensitivity(column)
            if sensitivity is not Sensitivity.PUBLIC:
                kind = sensitivity.value if sensitivity else "unknown"
                raise TemplateRejected(
                    f"a parameter is matched against {column.name} ({kind}): parameters may "
                    "pick values only of public columns (a high-cardinality column would "
                    "single records out); use a range or a verify template"
                )


def _check_arguments(node: exp.AggFunc, resolver: _Resolver) -> None:
    """No condition inside an aggregate; non-public columns only linearly, never paired."""
    for argument in _arguments(node):
        if argument.find(*_CONDITIONS) is not None:
            raise TemplateRejected(
                f"{_name(node)} over a condition (CASE, IF, comparisons, …) is not allowed "
                "in aggregate templates: it counts a sub-group the minimum group size "
                "never sees; put conditions in WHERE"
            )
        _check_linear(node, argument, resolver)
    if isinstance(node, _PAIRED) and any(
        resolver.sensitivity(c) is not Sensitivity.PUBLIC for c in node.find_all(exp.Column)
    ):
        raise TemplateRejected(
            f"{_name(node)} of a non-public column is not allowed in aggregate templates: it "
            "sums products of two values per row, and no dominance or p % check bounds what "
            "one contributor's pair gives away; use SUM/AVG/STDDEV of one column"
        )


# Two-column statistics: sums of products of two values.
_PAIRED = _classes("Corr", "CovarPop", "CovarSamp")
# What an aggregate may compute from a non-public column: a linear expression of it.
_LINEAR = (exp.Add, exp.Sub, exp.Neg, exp.Paren)


def _check_linear(aggregate: exp.AggFunc, argument: exp.Expr, resolver: _Resolver) -> None:
    """Refuse a non-linear use of a non-public column inside an aggregate's argument."""
    if not any(
        resolver.sensitivity(c) is not Sensitivity.PUBLIC for c in argument.find_all(exp.Column)
    ):
        return
    bad = _nonlinear(argument, resolver)
    if bad is None:
        return
    column = next(c for c in bad.find_all(exp.Column))
    sensitivity = resolver.sensitivity(column)
    kind = sensitivity.value if sensitivity else "unknown"
    raise TemplateRejected(
        f"{_name(aggregate)} over {_name(bad)} of {column.name} ({kind}) is not allowed in "
        "aggregate templates: a non-linear function of a non-public column (SIGN, LEAST, "
        "GREATEST, FLOOR, ROUND, ABS, CASE, comparisons, products of columns, …) with a "
        "constant turns the aggregate into a count of units past a threshold that the "
        "minimum group size never sees; aggregate such columns only as x or a·x + b, and "
        "put conditions in WHERE"
    )


def _nonlinear(node: exp.Expr, resolver: _Resolver) -> exp.Expr | None:
    """The first sub-expression that uses a non-public column non-linearly, if any."""
    if isinstance(node, exp.Column | exp.Literal):
        return None
    if not any(
        resolver.sensitivity(c) is not Sensitivity.PUBLIC for c in node.find_all(exp.Column)
    ):
        return None  # constants and public columns may be combined freely
    if isinstance(node, exp.Cast) and isinstance(node.this, exp.Column):
        return None  # a plain CAST of the column (a type change, not a step)
    if isinstance(node, exp.Mul | exp.Div):
        sides = [node.left, node.right] if isinstance(node, exp.Mul) else [node.left]
        constant = node.right if isinstance(node, exp.Div) else None
        with_columns = [s for s in (node.left, node.right) if s.find(exp.Column) is not None]
        if len(with_columns) > 1 or (constant is not None and constant.find(exp.Column)):
            return node  # x·y, x/y: products of values give power sums
        for side in sides:
            if (found := _nonlinear(side, resolver)) is not None:
                return found
        return None
    if isinstance(node, _LINEAR):
        for child in node.iter_expressions():
            if (found := _nonlinear(child, resolver)) is not None:
                return found
        return None
    return node


def _check_count(count: exp.Count) -> None:
    argument = count.this
    plain = argument.expressions if isinstance(argument, exp.Distinct) else [argument]
    if not all(isinstance(a, exp.Star | exp.Column) for a in plain) or not plain:
        raise TemplateRejected(
            "COUNT in aggregate templates takes * or plain columns (COUNT(*), "
            "COUNT(DISTINCT <column>)), not expressions"
        )


def _arguments(node: exp.AggFunc) -> Iterator[exp.Expr]:
    for child in node.iter_expressions():
        if isinstance(child, exp.Distinct):
            yield from child.expressions
        else:
            yield child


def _columns(node: exp.Expr) -> Iterator[exp.Column]:
    """Columns under ``node``; a subquery under it counts as an unresolvable column."""
    for child in node.walk():
        if isinstance(child, exp.Column):
            yield child
        elif isinstance(child, exp.Query) and child is not node:
            yield exp.column("subquery")  # not resolvable: treated as most sensitive


def _walk_local(node: exp.Expr) -> Iterator[exp.Expr]:
    """``node`` and its descendants, not entering subqueries."""
    yield node
    for child in node.iter_expressions():
        if not isinstance(child, exp.Query | exp.Subquery):
            yield from _walk_local(child)


def _inside(node: exp.Expr, ancestor: exp.Expr) -> bool:
    parent = node.parent
    while parent is not None:
        if parent is ancestor:
            return True
        parent = parent.parent
    return False


def _name(node: exp.Expr) -> str:
    return node.sql_name().upper() if isinstance(node, exp.Func) else node.key.upper()


class _Resolver:
    """The catalogue sensitivity of a column, through the scope it is written in."""

    def __init__(self, root: Scope, tables: Mapping[str, TableSchema]) -> None:
        self.tables = tables
        self.scope_of: dict[int, Scope] = {}
        for scope in root.traverse():
            for node in _walk_local(scope.expression):
                if isinstance(node, exp.Column):
                    self.scope_of[id(node)] = scope

    def sensitivity(self, column: exp.Column) -> Sensitivity | None:
        scope: Scope | None = self.scope_of.get(id(column))
        while scope is not None:
            source = scope.sources.get(column.table)
            if isinstance(source, exp.Table):
                schema = self.tables.get(f"{source.db}.{source.name}".lower())
                return schema.sensitivity_of(column.name) if schema else None
            if source is not None:
                return None  # a derived source: not resolved here, assume the worst
            scope = scope.parent
        return None
