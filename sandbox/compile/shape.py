"""Shape rules on the result of a template: output names, grouping, identifier lineage.

``output_names`` works on the parsed tree; the rest works on a copy *qualified* by sqlglot
against the catalogue schema (every column resolved to its table, GROUP BY ordinals and
aliases expanded, identifiers normalised), so structural comparisons mean what they say.

Identifier lineage is conservative: an output expression that mentions an ``identifier``
column (directly, or through a CTE, derived table or scalar subquery) anywhere other than
inside COUNT(…) / COUNT(DISTINCT …) / COUNT_IF / APPROX_COUNT_DISTINCT is refused — so no
raw identifiers, no MIN/MAX/FIRST/ANY_VALUE, no string or list aggregates, no hashes or
substrings of them. EXISTS(…) only yields a boolean and is not followed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from sqlglot import exp
from sqlglot.optimizer.scope import Scope

from sandbox.errors import TemplateRejected
from sandbox.schema import Sensitivity, TableSchema

_OUTPUT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_NEVER_REVEALS = (exp.Count, exp.CountIf, exp.ApproxDistinct, exp.Exists)


def output_names(select: exp.Select) -> tuple[str, ...]:
    """The result's column names: each must be a simple, unique name."""
    names: list[str] = []
    for position, projection in enumerate(select.expressions, start=1):
        if isinstance(projection, exp.Alias | exp.Column):
            name = projection.alias_or_name
        else:
            raise TemplateRejected(
                f"output column {position} ({projection.sql(dialect='spark')[:60]}) needs a "
                "name: write <expression> AS <name>"
            )
        if not _OUTPUT_NAME.fullmatch(name):
            raise TemplateRejected(
                f"output column {position} must have a simple name (letters, digits, _)"
            )
        if name.lower() in {n.lower() for n in names}:
            raise TemplateRejected(f"output column name {name} appears twice")
        names.append(name)
    return tuple(names)


def check_aggregate(
    select: exp.Select, names: tuple[str, ...], count_column: str | None
) -> tuple[str, ...]:
    """Check the top-level SELECT is grouped and has a COUNT column; return group columns."""
    group = select.args.get("group")
    if group is not None:
        for feature in ("rollup", "cube", "grouping_sets", "totals", "all"):
            if group.args.get(feature):
                raise TemplateRejected(
                    f"GROUP BY {feature.upper().replace('_', ' ')} is not allowed: list the "
                    "group keys (several grouping levels would allow differencing)"
                )
    keys: list[exp.Expr] = list(group.expressions) if group is not None else []
    projections = [p.unalias() for p in select.expressions]
    group_columns: list[str] = []
    for name, expression in zip(names, projections, strict=True):
        if any(expression == key for key in keys):
            group_columns.append(name)
        elif _bare_columns(expression, keys):
            raise TemplateRejected(
                f"output column {name} must be a GROUP BY key or an aggregate such as COUNT(*)"
            )
    for key in keys:
        if not any(key == expression for expression in projections):
            raise TemplateRejected(
                f"GROUP BY {key.sql(dialect='spark')[:60]} must also be an output column, so "
                "each released row is identified by its group"
            )
    if count_column is None:
        raise TemplateRejected(
            "an aggregate template needs output.count_column naming its COUNT(...) column"
        )
    if count_column not in names:
        raise TemplateRejected(f"count_column {count_column} is not an output column")
    if not _plain_count(projections[names.index(count_column)]):
        raise TemplateRejected(
            f"count_column {count_column} must be COUNT(*) or COUNT(DISTINCT <column>) "
            "exactly: no FILTER, CASE, window or expression (a conditional count is a "
            "yes/no oracle on single rows)"
        )
    return tuple(group_columns)


def _plain_count(node: exp.Expr) -> bool:
    """Whether ``node`` is exactly ``COUNT(*)`` or ``COUNT(DISTINCT <plain column>)``."""
    if not isinstance(node, exp.Count) or node.expressions:
        return False
    argument = node.this
    if isinstance(argument, exp.Star):
        return True
    if isinstance(argument, exp.Distinct):
        inner = argument.expressions
        return len(inner) == 1 and isinstance(inner[0], exp.Column) and not argument.args.get("on")
    return False


def _bare_columns(node: exp.Expr, keys: list[exp.Expr]) -> bool:
    """Whether ``node`` uses a column outside every aggregate and group key."""
    inside_aggregate = isinstance(node, exp.AggFunc | exp.Filter | exp.WithinGroup)
    if inside_aggregate or isinstance(node, exp.Subquery) or any(node == k for k in keys):
        return False
    if isinstance(node, exp.Column):
        return True
    return any(_bare_columns(child, keys) for child in node.iter_expressions())


def check_identifiers(
    root: Scope, names: tuple[str, ...], tables: Mapping[str, TableSchema]
) -> None:
    """Refuse top-level output columns that can reveal identifier values."""
    lineage = _Lineage(root, tables)
    select = root.expression
    assert isinstance(select, exp.Select)  # the compiler only builds this for a SELECT
    for name, projection in zip(names, select.expressions, strict=True):
        if lineage.tainted(projection.unalias(), root):
            raise TemplateRejected(
                f"output column {name} can reveal an identifier column; identifiers may only "
                "be counted (COUNT, COUNT(DISTINCT …)), never output, nor passed through "
                "MIN/MAX/FIRST/ANY_VALUE, string or list aggregates or other functions"
            )


class _Lineage:
    """Which outputs of which scope derive from identifier columns (memoised per scope)."""

    def __init__(self, root: Scope, tables: Mapping[str, TableSchema]) -> None:
        self.tables = tables
        self.by_expression = {id(s.expression): s for s in root.traverse()}
        self.memo: dict[int, list[bool]] = {}

    def outputs(self, scope: Scope) -> list[bool]:
        key = id(scope)
        if key not in self.memo:
            self.memo[key] = [True]  # a cycle (impossible without recursion) stays tainted
            if scope.is_set_operation:
                branches = [self.outputs(s) for s in scope.set_operation_scopes]
                self.memo[key] = [any(flags) for flags in zip(*branches, strict=False)]
            else:
                select = scope.expression
                self.memo[key] = [self.tainted(p.unalias(), scope) for p in select.expressions]
        return self.memo[key]

    def named_outputs(self, scope: Scope) -> dict[str, bool]:
        first = scope
        while first.is_set_operation:
            first = first.set_operation_scopes[0]
        query = first.expression
        selects = query.named_selects if isinstance(query, exp.Query) else []
        return dict(zip(selects, self.outputs(scope), strict=False))

    def tainted(self, node: exp.Expr, scope: Scope) -> bool:
        if isinstance(node, _NEVER_REVEALS):
            return False
        if isinstance(node, exp.Window | exp.Filter):
            return self.tainted(node.this, scope)
        if isinstance(node, exp.Column):
            return self._column(node, scope)
        if isinstance(node, exp.Subquery):
            inner = self.by_expression.get(id(node.this))
            return inner is None or any(self.outputs(inner))
        return any(self.tainted(child, scope) for child in node.iter_expressions())

    def _column(self, column: exp.Column, scope: Scope | None) -> bool:
        while scope is not None:
            source = scope.sources.get(column.table)
            if isinstance(source, exp.Table):
                schema = self.tables.get(f"{source.db}.{source.name}".lower())
                sensitivity = schema.sensitivity_of(column.name) if schema else None
                return sensitivity in (Sensitivity.IDENTIFIER, None)
            if isinstance(source, Scope):
                return self.named_outputs(source).get(column.name, True)
            scope = scope.parent
        return True  # unresolved: assume the worst
