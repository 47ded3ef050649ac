"""Quality rules checked against a profile: counts and rates in, verdicts out.

A `Check` names its rule, severity and column(s) and what was observed (a count or a rate,
never a value). Freshness compares the snapshot's age with `max_staleness`, else with the
dataset's update cycle (更新周期); drift compares a profile with the previous accepted one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from gateway.catalogue.documents import DatasetSpec
from gateway.quality.spec import (
    AllowedValues,
    KeyUnique,
    MaxNullRate,
    MaxStaleness,
    QualityRule,
    Required,
)
from sandbox import ColumnCheck, DatasetProfile, ProfileRequest

#: Hours per update cycle word; an unknown cycle has no freshness expectation.
CYCLE_HOURS = {
    "realtime": 1.0,
    "hourly": 1.0,
    "daily": 24.0,
    "weekly": 168.0,
    "monthly": 744.0,
    "quarterly": 2232.0,
    "yearly": 8784.0,
    "annual": 8784.0,
}
DRIFT_ROWS = 0.5  # a relative change in rows beyond this is flagged
DRIFT_NULL_RATE = 0.1  # an absolute change of a column's null rate beyond this is flagged


@dataclass(frozen=True, slots=True)
class Check:
    rule: str
    severity: str
    columns: tuple[str, ...]
    ok: bool
    observed: float | int | None  # a count or rate, never a data value
    limit: float | int | None = None

    def view(self) -> dict[str, Any]:
        return {**asdict(self), "columns": list(self.columns)}


def request_for(spec: DatasetSpec) -> ProfileRequest:
    """What to measure: every declared column; domains from declared values and rules."""
    rules = spec.quality.rules if spec.quality is not None else []
    domains: dict[str, tuple[str | int, ...]] = {
        c.name: tuple(c.values) for c in spec.columns if c.values is not None
    }
    patterns: dict[str, str] = {}
    for rule in rules:
        if isinstance(rule, AllowedValues):
            if rule.values is not None:
                domains.setdefault(rule.column, tuple(rule.values))
            if rule.pattern is not None:
                patterns.setdefault(rule.column, rule.pattern)
    key = next((tuple(r.columns) for r in rules if isinstance(r, KeyUnique)), ())
    return ProfileRequest(
        dataset_id=spec.id,
        columns=tuple(
            ColumnCheck(
                name=c.name,
                public=c.sensitivity == "public",
                domain=domains.get(c.name),
                pattern=patterns.get(c.name),
            )
            for c in spec.columns
        ),
        key=key,
    )


def null_rate(profile: DatasetProfile, column: str) -> float:
    found = profile.column(column)
    if found is None or profile.rows == 0:
        return 0.0
    return found.nulls / profile.rows


def _check(rule: QualityRule, profile: DatasetProfile, age_hours: float) -> Check:
    sev = rule.severity
    if isinstance(rule, Required):
        missing = sum(c.nulls for c in profile.columns if c.name in rule.columns)
        return Check("required", sev, tuple(rule.columns), missing == 0, missing, 0)
    if isinstance(rule, KeyUnique):
        bad = (profile.key_duplicates or 0) + (profile.key_nulls or 0)
        return Check("key_unique", sev, tuple(rule.columns), bad == 0, bad, 0)
    if isinstance(rule, AllowedValues):
        found = profile.column(rule.column)
        outside = (found.outside_domain or 0) if found is not None else 0
        return Check("allowed_values", sev, (rule.column,), outside == 0, outside, 0)
    if isinstance(rule, MaxNullRate):
        rate = round(null_rate(profile, rule.column), 6)
        return Check("max_null_rate", sev, (rule.column,), rate <= rule.max, rate, rule.max)
    assert isinstance(rule, MaxStaleness)
    age = round(age_hours, 3)
    return Check("max_staleness", sev, (), age <= rule.hours, age, rule.hours)


def evaluate(spec: DatasetSpec, profile: DatasetProfile, *, age_hours: float) -> list[Check]:
    rules = spec.quality.rules if spec.quality is not None else []
    return [_check(rule, profile, age_hours) for rule in rules]


def freshness(spec: DatasetSpec, age_hours: float) -> dict[str, Any]:
    """The snapshot's age against the update cycle (更新周期)."""
    expected = CYCLE_HOURS.get(spec.update_cycle.strip().lower())
    state = "unknown" if expected is None else ("fresh" if age_hours <= expected else "stale")
    return {"age_hours": round(age_hours, 3), "cycle_hours": expected, "state": state}


def drift(previous: dict[str, Any] | None, current: DatasetProfile) -> dict[str, Any] | None:
    """Changes against the previous accepted profile (counts and rates only)."""
    if previous is None:
        return None
    before_rows = int(previous["rows"])
    change = (current.rows - before_rows) / before_rows if before_rows else None
    columns = {}
    flagged = change is not None and abs(change) > DRIFT_ROWS
    before = {c["name"]: c for c in previous["columns"]}
    for col in current.columns:
        old = before.get(col.name)
        if old is None:
            continue
        old_rate = old["nulls"] / before_rows if before_rows else 0.0
        delta = round(null_rate(current, col.name) - old_rate, 6)
        moved = abs(delta) > DRIFT_NULL_RATE
        flagged = flagged or moved
        columns[col.name] = {
            "null_rate_change": delta,
            "distinct_change": col.distinct - int(old["distinct"]),
            "flagged": moved,
        }
    rows_change = None if change is None else round(change, 6)
    return {"rows_change": rows_change, "columns": columns, "flagged": flagged}
