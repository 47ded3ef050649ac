"""`dp` templates: the sandbox plan of a template version, checked against its dataset."""

from __future__ import annotations

from gateway.catalogue import registry as catalogue
from gateway.catalogue.documents import DatasetSpec, TemplateKindName, TemplateSpec
from gateway.dp.specs import to_plan
from sandbox import (
    DP_INTEGER_TYPES,
    CompiledQuery,
    DpPlan,
    TemplateRejected,
    check_dp_plan,
    compile_dp,
)

MAX_PUBLIC_KEYS = 10_000


def dp_plan(spec: TemplateSpec, datasets: dict[str, DatasetSpec]) -> DpPlan:
    """The plan of a dp template (raises TemplateRejected when it does not fit its dataset)."""
    if spec.kind is not TemplateKindName.DP or spec.dp is None:
        raise TemplateRejected("not a dp template")
    (ds_id,) = spec.datasets
    ds = datasets[ds_id]
    if ds.privacy is None:
        raise TemplateRejected(f"dataset {ds_id} has no privacy budget set by its owner")
    integer = frozenset(c.name for c in ds.columns if c.type.upper() in DP_INTEGER_TYPES)
    plan = to_plan(ds_id, ds.privacy_unit, spec.dp, integer)
    check_dp_plan(plan, catalogue.table_schema(ds), ds.privacy_unit)
    if plan.group_by and not plan.private_keys:
        declared = {c.name: c.values for c in ds.columns if c.sensitivity == "public"}
        undeclared = [c for c in plan.group_by if declared.get(c) is None]
        if undeclared:
            raise TemplateRejected(
                f"public keys need the values of {', '.join(undeclared)} declared in the "
                f"catalogue (a public column's `values`), or private key selection"
            )
        size = 1
        for column in plan.group_by:
            size *= len(declared[column] or ())
        if size > MAX_PUBLIC_KEYS:
            raise TemplateRejected(f"the public key set has more than {MAX_PUBLIC_KEYS} keys")
    return plan


def dp_compile(spec: TemplateSpec, datasets: dict[str, DatasetSpec]) -> CompiledQuery:
    return compile_dp(dp_plan(spec, datasets), tuple(sorted(spec.parameters)))
