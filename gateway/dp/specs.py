"""The DP parts of the documents: a `dp` template's query and a dataset's privacy budget.

```yaml
# in a template of kind dp (no `sql`)
dp:
  bounds: {rows_per_unit: 1, groups_per_unit: 1}
  filters: [{column: birth_year, op: ">=", parameter: born_since}]
  group_by: {columns: [district], keys: public}      # or keys: private, delta: 1e-7
  measures:
    - {name: residents, kind: count}
    - {name: income, kind: mean, column: monthly_income, lower: 0, upper: 50000}
    - {name: household, kind: histogram, column: household_size, bins: [1, 2, 3, 5, 9]}
    - {name: median_income, kind: quantile, column: monthly_income, alpha: 0.5,
       candidates: [0, 1000, 2000, 5000, 10000, 20000, 50000]}
  cost: {rho: 0.1}                                     # or {epsilon: 1.0}

# in a dataset with a privacy_unit, set by its data owner
privacy:
  budget: {rho_per_department: 1.0, rho_total: 3.0, delta_per_department: 1e-6,
           delta_total: 1e-5, refresh: monthly}       # daily|monthly|yearly|snapshot|never
```

Numbers are read as decimals (exact); the ledger stores them as integer micro-units.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sandbox import DpBudget, DpFilter, DpMeasure, DpPlan, MeasureKind, TemplateRejected

NAME = r"^[a-z][a-z0-9_]{0,62}$"
COLUMN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class DpBounds(_Strict):
    rows_per_unit: int = Field(ge=1, le=1000)
    groups_per_unit: int = Field(default=1, ge=1, le=1000)


class DpFilterSpec(_Strict):
    column: str = Field(pattern=COLUMN)
    op: Literal["=", "!=", "<", "<=", ">", ">="]
    parameter: str | None = Field(default=None, pattern=NAME)
    value: str | int | None = None

    @model_validator(mode="after")
    def _one_operand(self) -> DpFilterSpec:
        if (self.parameter is None) == (self.value is None):
            raise ValueError("a filter compares with either a parameter or a value")
        return self


class DpGroupBy(_Strict):
    columns: list[str] = Field(default_factory=list, max_length=3)
    keys: Literal["public", "private"] = "public"
    delta: Decimal | None = Field(default=None, gt=0, lt=Decimal("0.001"))
    threshold: int | None = Field(default=None, ge=1, le=10**9)


class DpMeasureSpec(_Strict):
    name: str = Field(pattern=NAME)
    kind: Literal["count", "sum", "mean", "histogram", "quantile"]
    column: str | None = Field(default=None, pattern=COLUMN)
    lower: Decimal | None = None
    upper: Decimal | None = None
    bins: list[Decimal] = Field(default_factory=list, max_length=101)
    candidates: list[Decimal] = Field(default_factory=list, max_length=64)  # quantile
    alpha: Decimal | None = Field(default=None, ge=0, le=1)  # quantile: 0.5 = median

    @model_validator(mode="after")
    def _fields_of_kind(self) -> DpMeasureSpec:
        if self.kind != "quantile" and (self.candidates or self.alpha is not None):
            raise ValueError("candidates and alpha belong to a quantile measure")
        if self.kind != "histogram" and self.bins:
            raise ValueError("bins belong to a histogram measure")
        return self


class DpCost(_Strict):
    epsilon: Decimal | None = Field(default=None, gt=0, le=100)
    rho: Decimal | None = Field(default=None, gt=0, le=100)

    @model_validator(mode="after")
    def _one(self) -> DpCost:
        if (self.epsilon is None) == (self.rho is None):
            raise ValueError("give the cost as epsilon (pure DP) or rho (zCDP), not both")
        return self


class DpQuerySpec(_Strict):
    bounds: DpBounds
    filters: list[DpFilterSpec] = Field(default_factory=list, max_length=20)
    group_by: DpGroupBy = DpGroupBy()
    measures: list[DpMeasureSpec] = Field(min_length=1, max_length=20)
    cost: DpCost


class DpBudgetSpec(_Strict):
    rho_per_department: Decimal = Field(gt=0, le=1000)
    rho_total: Decimal = Field(gt=0, le=10000)
    delta_per_department: Decimal = Field(default=Decimal(0), ge=0, lt=Decimal("0.01"))
    delta_total: Decimal = Field(default=Decimal(0), ge=0, lt=Decimal("0.01"))
    refresh: Literal["daily", "monthly", "yearly", "snapshot", "never"] = "monthly"

    @model_validator(mode="after")
    def _total_covers_one(self) -> DpBudgetSpec:
        if self.rho_total < self.rho_per_department:
            raise ValueError("rho_total must be at least rho_per_department")
        if self.delta_total < self.delta_per_department:
            raise ValueError("delta_total must be at least delta_per_department")
        return self


class DatasetPrivacySpec(_Strict):
    budget: DpBudgetSpec


def _frac(value: Decimal | None) -> Fraction | None:
    return None if value is None else Fraction(value)


def to_plan(
    dataset_id: str, unit: str | None, query: DpQuerySpec, integer_columns: frozenset[str]
) -> DpPlan:
    """The sandbox plan of a template's `dp` section (raises TemplateRejected)."""
    if unit is None:
        raise TemplateRejected(f"dataset {dataset_id} declares no privacy_unit")
    return DpPlan(
        dataset_id=dataset_id,
        unit=unit,
        rows_per_unit=query.bounds.rows_per_unit,
        groups_per_unit=query.bounds.groups_per_unit,
        filters=tuple(
            DpFilter(column=f.column, op=f.op, parameter=f.parameter, value=f.value)
            for f in query.filters
        ),
        group_by=tuple(query.group_by.columns),
        private_keys=query.group_by.keys == "private",
        delta=_frac(query.group_by.delta),
        threshold=query.group_by.threshold,
        measures=tuple(
            DpMeasure(
                name=m.name,
                kind=MeasureKind(m.kind),
                column=m.column,
                lower=_frac(m.lower),
                upper=_frac(m.upper),
                bins=tuple(Fraction(b) for b in (m.candidates if m.kind == "quantile" else m.bins)),
                alpha=_frac(m.alpha),
            )
            for m in query.measures
        ),
        budget=DpBudget(epsilon=_frac(query.cost.epsilon), rho=_frac(query.cost.rho)),
        integer_columns=integer_columns,
    )
