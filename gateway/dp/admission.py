"""What `jobs.submit` adds for a `dp` job: the budget reservation.

A `dp` job's cost is the sum of its measurements' privacy maps (built once per template
version by `sandbox.dp_mechanism`), rounded up to ledger units, and is reserved in the
transaction that writes the job row and its `job.accepted` entry. An exhausted budget rolls
that transaction back, is audited as `job.denied`, and answers 429 with what remains.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.auth.principal import Principal
from gateway.catalogue import registry as catalogue
from gateway.catalogue.documents import DatasetSpec, TemplateKindName
from gateway.catalogue.templates import StoredTemplate
from gateway.context import Gateway
from gateway.dp import ledger
from gateway.dp.plans import dp_plan
from gateway.errors import BudgetExhausted
from gateway.store import db
from sandbox import dp_mechanism


def reserve_budget(
    gw: Gateway,
    conn: db.Connection,
    principal: Principal,
    *,
    stored: StoredTemplate,
    datasets: dict[str, DatasetSpec],
    job_id: str,
) -> dict[str, Any]:
    """Inside the job's transaction: reserve a dp job's budget (other kinds: nothing).
    Returns audit details (the reserved cost); raises BudgetExhausted."""
    if stored.spec.kind is not TemplateKindName.DP:
        return {}
    plan = dp_plan(stored.spec, datasets)
    mech = dp_mechanism(plan)
    ds = datasets[plan.dataset_id]
    assert ds.privacy is not None  # dp_plan refuses a dataset without a budget
    budget = ds.privacy.budget
    source = catalogue.table_source(gw, ds).path if budget.refresh == "snapshot" else None
    cost = ledger.Cost.of(mech.rho, mech.delta)
    period = ledger.period(budget, now=datetime.now(UTC), source=source)
    ledger.reserve(
        conn,
        job_id=job_id,
        department=principal.department,
        dataset_id=ds.id,
        period_=period,
        caps=ledger.Caps.of(budget),
        cost=cost,
    )
    return {"privacy": {"dataset": ds.id, "period": period, "rho_units": cost.rho}}


def audit_exhausted(
    gw: Gateway, principal: Principal, *, target: str, template: str, exc: BudgetExhausted
) -> None:
    with gw.db.begin() as conn:
        gw.audit.record(
            conn,
            type="job.denied",
            principal=principal,
            action="submit",
            target=target,
            allowed=False,
            rule="ledger",
            reason="privacy budget exhausted",
            details={"template": template, "cost": exc.extensions.get("cost")},
        )
