"""Disclosure control for exact aggregate results: a pipeline of named rules.

Each rule sees every group of the result and the ones withheld so far, and withholds more
(with the rule's name and a reason). Withheld groups are listed by their group key only;
their counts and other values never leave. Rules run in ``PIPELINE`` order:

- ``min_group_size``: a group with fewer contributors than the threshold (or an unknown,
  NULL count) is withheld. Contributors are distinct units where the dataset declares one
  (from the derived ``census`` query), else the released count;
- ``dominance`` (n, k): withheld when the n largest contributors hold at least k of a
  magnitude (a SUM/AVG output) — one of them could estimate the others closely;
- ``p_percent``: withheld when the total less the two largest contributions is below p % of
  the largest — the second largest could estimate the largest within p %;
- ``differencing``: withheld by the caller (the gateway's release history): the group's
  population differs from one released before by fewer than k units;
- ``secondary``: a withheld cell must not be recomputable from totals. Along every group
  column, the cells that agree on all other keys form a line whose total is released or
  derivable (another release, a coarser template); a line with exactly one withheld cell
  gets its smallest released cell withheld too, repeated until no line has exactly one;
- ``rounding`` (optional) rounds released counts and sums to a multiple of a base; it
  withholds nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sandbox.errors import SandboxBug
from sandbox.results import ResultTable

GroupKey = tuple[tuple[str, object], ...]


@dataclass(frozen=True, slots=True)
class DisclosureRules:
    """The owner's disclosure limits (the strictest of all datasets a query reads).

    ``dominance_n``/``dominance_k`` of None, ``p_percent`` of None and ``rounding_base`` of
    None switch those rules off.
    """

    min_group_size: int = 10
    dominance_n: int | None = 2
    dominance_k: float | None = 0.9
    p_percent: float | None = 10.0
    rounding_base: int | None = None
    secondary: bool = True

    def __post_init__(self) -> None:
        if type(self.min_group_size) is not int or self.min_group_size < 1:
            raise SandboxBug("min_group_size must be an integer of at least 1")
        if (self.dominance_n is None) != (self.dominance_k is None):
            raise SandboxBug("dominance needs both n and k, or neither")
        if self.dominance_n is not None and (
            type(self.dominance_n) is not int or not 1 <= self.dominance_n <= 10
        ):
            raise SandboxBug("dominance n must be an integer from 1 to 10")
        if self.dominance_k is not None and not 0 < self.dominance_k <= 1:
            raise SandboxBug("dominance k must be in (0, 1]")
        if self.p_percent is not None and not 0 < self.p_percent <= 100:
            raise SandboxBug("p_percent must be in (0, 100]")
        if self.rounding_base is not None and (
            type(self.rounding_base) is not int or not 1 <= self.rounding_base <= 1000
        ):
            raise SandboxBug("rounding_base must be an integer from 1 to 1000")

    @property
    def top_n(self) -> int:
        """How many of the largest contributions the rules need per group."""
        return max(self.dominance_n or 1, 2 if self.p_percent is not None else 1)


@dataclass(frozen=True, slots=True)
class Contributors:
    """Per group: distinct contributing units, and per magnitude column its absolute total
    and the largest absolute contributions (descending)."""

    units: int
    magnitudes: Mapping[str, tuple[float, tuple[float, ...]]] = field(default_factory=dict)


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


def group_key(
    columns: Sequence[str], group_columns: Sequence[str], row: Sequence[object]
) -> GroupKey:
    return tuple((c, row[columns.index(c)]) for c in group_columns)


@dataclass(slots=True)
class _Group:
    key: GroupKey
    row: tuple[object, ...]
    count: object
    contributors: Contributors | None
    withheld: WithheldCell | None = None


def _min_group_size(groups: Sequence[_Group], rules: DisclosureRules) -> None:
    threshold = rules.min_group_size
    for group in groups:
        if group.withheld is not None:
            continue
        count = group.contributors.units if group.contributors is not None else group.count
        if count is None:
            reason = "the number of contributors is unknown"
        elif type(count) is not int:
            raise SandboxBug("the count column does not hold integers")
        elif count < threshold:
            reason = f"fewer than {threshold} contributors"
        else:
            continue
        group.withheld = WithheldCell(group.key, None, "min_group_size", reason)


def _dominance(groups: Sequence[_Group], rules: DisclosureRules) -> None:
    n, k = rules.dominance_n, rules.dominance_k
    if n is None or k is None:
        return
    for group in groups:
        if group.withheld is not None or group.contributors is None:
            continue
        for column, (total, top) in group.contributors.magnitudes.items():
            if total > 0 and sum(top[:n]) >= k * total:
                reason = f"the {n} largest contributors hold at least {k:.0%} of {column}"
                group.withheld = WithheldCell(group.key, None, "dominance", reason)
                break


def _p_percent(groups: Sequence[_Group], rules: DisclosureRules) -> None:
    p = rules.p_percent
    if p is None:
        return
    for group in groups:
        if group.withheld is not None or group.contributors is None:
            continue
        for column, (total, top) in group.contributors.magnitudes.items():
            largest = top[0] if top else 0.0
            second = top[1] if len(top) > 1 else 0.0
            if largest > 0 and total - largest - second < p / 100 * largest:
                reason = (
                    "the second largest contributor could estimate the largest within "
                    f"{p:g} % ({column})"
                )
                group.withheld = WithheldCell(group.key, None, "p_percent", reason)
                break


def _secondary(groups: Sequence[_Group], rules: DisclosureRules) -> None:
    if not rules.secondary or not groups:
        return
    dimensions = range(len(groups[0].key))
    changed = True
    while changed:
        changed = False
        for dim in dimensions:
            lines: dict[GroupKey, list[_Group]] = {}
            for group in groups:
                rest = group.key[:dim] + group.key[dim + 1 :]
                lines.setdefault(rest, []).append(group)
            for line in lines.values():
                if sum(g.withheld is not None for g in line) != 1:
                    continue
                released = [g for g in line if g.withheld is None]
                if not released:
                    continue
                # ties broken by the key, not by the order the engine returned groups in
                # (which differs between engines and between runs of one)
                smallest = min(released, key=lambda g: (_size(g), repr(g.key)))
                column = groups[0].key[dim][0]
                smallest.withheld = WithheldCell(
                    smallest.key,
                    None,
                    "secondary",
                    "withheld too, so that a withheld cell cannot be recomputed from the "
                    f"total over {column}",
                )
                changed = True


def _size(group: _Group) -> float:
    if group.contributors is not None:
        return group.contributors.units
    return group.count if isinstance(group.count, int | float) else math.inf


PIPELINE = ("min_group_size", "dominance", "p_percent", "differencing", "secondary")


def apply_disclosure(
    table: ResultTable,
    *,
    count_column: str,
    group_columns: Sequence[str],
    rules: DisclosureRules,
    contributors: Mapping[GroupKey, Contributors] | None = None,
    differencing: Mapping[GroupKey, str] | None = None,
) -> DisclosedTable:
    """Run the disclosure pipeline over an aggregate result.

    ``contributors`` (the derived contributor figures) feeds min_group_size (distinct
    units), dominance and p %; a group missing from it is withheld (fail closed).
    ``differencing`` maps groups the release history withholds to the reason.
    """
    if count_column not in table.columns:
        raise SandboxBug(f"count column {count_column} is not in the result")
    missing = [c for c in group_columns if c not in table.columns]
    if missing or count_column in group_columns:
        raise SandboxBug("group columns must be result columns other than the count column")
    count_at = table.columns.index(count_column)
    groups = []
    for row in table.rows:
        key = group_key(table.columns, group_columns, row)
        found = None if contributors is None else contributors.get(key)
        group = _Group(key, row, row[count_at], found)
        if contributors is not None and found is None:
            group.withheld = WithheldCell(
                key, None, "min_group_size", "the number of contributors is unknown"
            )
        groups.append(group)
    _min_group_size(groups, rules)
    _dominance(groups, rules)
    _p_percent(groups, rules)
    for group in groups:
        reason = (differencing or {}).get(group.key)
        if group.withheld is None and reason is not None:
            group.withheld = WithheldCell(group.key, None, "differencing", reason)
    _secondary(groups, rules)
    kept = [g.row for g in groups if g.withheld is None]
    if rules.rounding_base is not None:
        rounded = [i for i, c in enumerate(table.columns) if c not in group_columns]
        kept = [_rounded(row, rounded, rules.rounding_base) for row in kept]
    order = {name: i for i, name in enumerate(PIPELINE)}
    withheld = sorted(
        (g.withheld for g in groups if g.withheld is not None), key=lambda c: order[c.rule]
    )
    return DisclosedTable(
        columns=table.columns, types=table.types, rows=tuple(kept), withheld=tuple(withheld)
    )


def _rounded(row: tuple[object, ...], at: Sequence[int], base: int) -> tuple[object, ...]:
    out = list(row)
    for i in at:
        value = out[i]
        if type(value) is int:
            out[i] = ((2 * value + base) // (2 * base)) * base  # nearest, halves up
        elif type(value) is float and math.isfinite(value):
            out[i] = float(math.floor(value / base + 0.5) * base)
    return tuple(out)
