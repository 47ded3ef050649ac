"""The cost preview of a `dp` job: what it would charge, what the department has left, and how
wide its intervals will be — before anything runs, and without reserving or spending anything.

It goes through the same steps as a submission up to the reservation: `job submit` under the
policy, the one admission decision (`jobs.admission.decide`, whose refusal is reported, not
raised: nothing was submitted), the parameters, and the DP plan and mechanism the job would
use. Only the caller's own department row of the ledger is shown (never the global row: it
would tell what other departments spent). The preview is audited as `job.estimated`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from gateway.auth.principal import Principal
from gateway.authz import require
from gateway.catalogue import registry as catalogue
from gateway.catalogue import templates
from gateway.catalogue.documents import TemplateKindName
from gateway.context import Gateway
from gateway.dp import ledger
from gateway.dp.ledger import DELTA_UNIT, RHO_UNIT
from gateway.dp.plans import dp_plan
from gateway.errors import InvalidInput
from gateway.jobs import admission
from gateway.store import db
from sandbox import ParameterError, dp_mechanism, validate_parameters


def _units(value: int, unit: int) -> str:
    return str(Decimal(value) / unit)


def estimate(
    gw: Gateway,
    principal: Principal,
    *,
    template_id: str,
    version: int | None,
    parameters: dict[str, Any],
    purpose: str,
    purposes: Sequence[str] = (),
) -> dict[str, Any]:
    target = f"template:{template_id}@{version if version is not None else 'latest'}"
    require(gw, principal, "job", "submit", event="job.denied", target=target)
    stored = templates.get(gw, template_id, version)
    if stored.spec.kind is not TemplateKindName.DP:
        raise InvalidInput("only a dp job has a privacy cost to estimate")
    purpose_ids, description = admission.named_purposes(purpose, purposes)
    with db.reading(gw.db) as conn:
        datasets = templates.datasets_of(conn, stored.spec)
        question = admission.ask(
            conn,
            roles=principal.roles,
            department=principal.department,
            stored=stored,
            datasets=datasets,
            purpose_ids=purpose_ids,
            described=bool(description),
        )
    verdict = admission.decide(gw.policy.current(), question)
    try:
        validate_parameters(
            templates.resolve_parameter_specs(gw, stored.spec, datasets), parameters
        )
    except ParameterError as exc:
        raise InvalidInput(str(exc), parameter=exc.parameter) from None
    plan = dp_plan(stored.spec, datasets)
    mech = dp_mechanism(plan)
    ds = datasets[plan.dataset_id]
    assert ds.privacy is not None  # dp_plan refuses a dataset without a budget
    budget = ds.privacy.budget
    source = catalogue.table_source(gw, ds).path if budget.refresh == "snapshot" else None
    period = ledger.period(budget, now=datetime.now(UTC), source=source)
    cost = ledger.Cost.of(mech.rho, mech.delta)
    caps = ledger.Caps.of(budget)
    with db.reading(gw.db) as conn:
        left_rho, left_delta = ledger.remaining(conn, principal.department, ds.id, period, caps)
    body: dict[str, Any] = {
        "template": stored.spec.id,
        "version": stored.spec.version,
        "dataset": ds.id,
        "period": period,
        "cost": {
            "rho": _units(cost.rho, RHO_UNIT),
            "delta": _units(cost.delta, DELTA_UNIT),
            "epsilon": ledger.epsilon_at(Fraction(cost.rho, RHO_UNIT)),
        },
        "remaining": {
            "rho": _units(left_rho, RHO_UNIT),
            "delta": _units(left_delta, DELTA_UNIT),
            "epsilon": ledger.epsilon_at(max(Fraction(left_rho, RHO_UNIT), Fraction(0))),
        },
        "fits_department_budget": cost.rho <= left_rho and cost.delta <= left_delta,
        "accuracy": mech.expected_accuracy(),
        "admitted": isinstance(verdict, admission.Admission),
    }
    if isinstance(verdict, admission.Refusal):
        body["refusal"] = {"reason_code": verdict.reason_code, "reason": verdict.message}
    gw.audit.record_durable(
        type="job.estimated",
        principal=principal,
        action="estimate",
        target=f"template:{stored.ref}",
        allowed=True,
        details={
            "template": stored.spec.id,
            "version": stored.spec.version,
            "parameters": gw.audit.fingerprint(parameters),
            "rho_units": cost.rho,
        },
    )
    return body
