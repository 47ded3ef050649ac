"""Disclosure control for exact aggregate results: a pipeline of named rules.

Each rule sees the groups still released and returns those it keeps plus the cells it
withholds (with the rule's name and a reason). Withheld groups are listed by their group
key only; their counts and other values never leave. Rules run in ``PIPELINE`` order:

- ``min_group_size``: a group with fewer contributors than the threshold (or an unknown,
  NULL count) is withheld.

Dominance (n, k) and secondary suppression slot in after it; they will need more than the
released columns (contributions per unit, the table's margins), hence the context object.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sandbox.errors import SandboxBug
from sandbox.results import ResultTable

GroupKey = tuple[tuple[str, object], ...]


@dataclass(frozen=True, slots=True)
class DisclosureRules:
    """The owner's disclosure limits (the strictest of all datasets a query reads)."""

    min_group_size: int = 10

    def __post_init__(self) -> None:
        if type(self.min_group_size) is not int or self.min_group_size < 1:
            raise SandboxBug("min_group_size must be an integer of at least 1")


@dataclass(frozen=True, slots=True)
class WithheldCell:
    """A withheld group (``column`` None) or cell, named by its group key only."""

    key: GroupKey
    column: str | None
    rule: str
    reason: str


@dataclass(frozen=True, slots=True)
class DisclosedTable:
    """What may be released: the rows that passed, and what was withheld and why."""

    columns: tuple[str, ...]
    types: tuple[str, ...]
    rows: tuple[tuple[object, ...], ...]
    withheld: tuple[WithheldCell, ...]


@dataclass(frozen=True, slots=True)
class _Group:
    key: GroupKey
    row: tuple[object, ...]
    count: object


@dataclass(frozen=True, slots=True)
class _Context:
    rules: DisclosureRules
    count_column: str


Rule = Callable[[Sequence[_Group], _Context], tuple[list[_Group], list[WithheldCell]]]


def _min_group_size(
    groups: Sequence[_Group], ctx: _Context
) -> tuple[list[_Group], list[WithheldCell]]:
    threshold = ctx.rules.min_group_size
    kept: list[_Group] = []
    withheld: list[WithheldCell] = []
    for group in groups:
        if group.count is None:
            reason = "the number of contributors is unknown"
        elif type(group.count) is not int:
            raise SandboxBug(f"count column {ctx.count_column} does not hold integers")
        elif group.count < threshold:
            reason = f"fewer than {threshold} contributors"
        else:
            kept.append(group)
            continue
        withheld.append(WithheldCell(group.key, None, "min_group_size", reason))
    return kept, withheld


PIPELINE: tuple[tuple[str, Rule], ...] = (("min_group_size", _min_group_size),)


def apply_disclosure(
    table: ResultTable,
    *,
    count_column: str,
    group_columns: Sequence[str],
    rules: DisclosureRules,
) -> DisclosedTable:
    """Run the disclosure pipeline over an aggregate result."""
    if count_column not in table.columns:
        raise SandboxBug(f"count column {count_column} is not in the result")
    missing = [c for c in group_columns if c not in table.columns]
    if missing or count_column in group_columns:
        raise SandboxBug("group columns must be result columns other than the count column")
    key_at = [(c, table.columns.index(c)) for c in group_columns]
    count_at = table.columns.index(count_column)
    groups = [
        _Group(tuple((c, row[i]) for c, i in key_at), row, row[count_at]) for row in table.rows
    ]
    ctx = _Context(rules, count_column)
    withheld: list[WithheldCell] = []
    for _name, rule in PIPELINE:
        groups, newly_withheld = rule(groups, ctx)
        withheld.extend(newly_withheld)
    return DisclosedTable(
        columns=table.columns,
        types=table.types,
        rows=tuple(g.row for g in groups),
        withheld=tuple(withheld),
    )
