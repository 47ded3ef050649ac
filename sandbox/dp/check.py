"""A ``dp`` plan must fit its dataset: its privacy unit, its columns, public group keys."""

from __future__ import annotations

from sandbox.dp.plan import FLOAT_TYPES, INTEGER_TYPES, DpPlan, MeasureKind
from sandbox.errors import TemplateRejected
from sandbox.schema import Sensitivity, TableSchema


def check_against(plan: DpPlan, table: TableSchema, unit: str | None) -> None:  # noqa: PLR0912
    """The plan must fit the dataset: its privacy unit, its columns, public group keys."""
    if unit is None:
        raise TemplateRejected(f"dataset {table.dataset_id} declares no privacy_unit")
    if plan.unit != unit:
        raise TemplateRejected(f"the privacy unit of {table.dataset_id} is {unit}")
    types = {c.name: c.type.upper() for c in table.columns}
    for f in plan.filters:
        if f.column not in types:
            raise TemplateRejected(f"filter column {f.column} is not in {table.dataset_id}")
    for column in plan.group_by:
        if column not in types:
            raise TemplateRejected(f"group-by column {column} is not in {table.dataset_id}")
        if column == plan.unit:
            raise TemplateRejected("the privacy unit cannot be a group-by column")
        if not plan.private_keys and table.sensitivity_of(column) is not Sensitivity.PUBLIC:
            raise TemplateRejected(
                f"group-by column {column} is not public: use private key selection"
            )
    for m in plan.measures:
        if m.column is None:
            continue
        kind = types.get(m.column)
        if kind is None:
            raise TemplateRejected(f"measure column {m.column} is not in {table.dataset_id}")
        if m.column == plan.unit:
            raise TemplateRejected("the privacy unit cannot be measured")
        if kind not in INTEGER_TYPES | FLOAT_TYPES:
            raise TemplateRejected(f"measure {m.name}: column {m.column} is not numeric")
        if kind in INTEGER_TYPES and m.kind in (MeasureKind.SUM, MeasureKind.MEAN):
            assert m.lower is not None and m.upper is not None
            if m.lower.denominator != 1 or m.upper.denominator != 1:
                raise TemplateRejected(f"measure {m.name}: integer columns take integer bounds")
