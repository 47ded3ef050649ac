"""What `jobs.submit` adds for DP and retries: the budget reservation and `Idempotency-Key`.

- A `dp` job's cost is the sum of its measurements' privacy maps (built once per template
  version by `sandbox.dp_mechanism`), rounded up to ledger units, and is reserved in the
  transaction that writes the job row and its `job.accepted` entry. An exhausted budget
  rolls that transaction back, is audited as `job.denied`, and answers 429 with what remains.
- A request carrying an `Idempotency-Key` is remembered per department with a hash of its
  body; the same key again returns the same job (and so the same stored noisy answer, never
  a fresh draw); the same key with a different body is a conflict.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from gateway.auth.principal import Principal
from gateway.catalogue import registry as catalogue
from gateway.catalogue.documents import DatasetSpec, TemplateKindName
from gateway.catalogue.templates import StoredTemplate
from gateway.context import Gateway
from gateway.dp import ledger
from gateway.dp.plans import dp_plan
from gateway.errors import BudgetExhausted, Conflict, InvalidInput
from gateway.store import db, schema
from sandbox import dp_mechanism

MAX_KEY = 200


def request_hash(template_id: str, version: int | None, parameters: Any, purpose: str) -> str:
    body = {
        "template": template_id,
        "version": version,
        "parameters": parameters,
        "purpose": purpose,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def check_key(key: str | None) -> None:
    if key is not None and not (0 < len(key) <= MAX_KEY and key.isprintable()):
        raise InvalidInput(f"Idempotency-Key must be 1 to {MAX_KEY} printable characters")


def replay(
    gw: Gateway, principal: Principal, key: str | None, request: str
) -> dict[str, Any] | None:
    """The job an earlier request with this key created, or None."""
    if key is None:
        return None
    check_key(key)
    k, j = schema.idempotency_keys, schema.jobs
    with db.reading(gw.db) as conn:
        row = conn.execute(
            sa.select(k.c.request_hash, j.c.id, j.c.status)
            .join(j, j.c.id == k.c.job_id)
            .where(k.c.department == principal.department, k.c.key == key)
        ).first()
    if row is None:
        return None
    if row.request_hash != request:
        raise Conflict("this Idempotency-Key was used for a different request")
    with gw.db.begin() as conn:
        gw.audit.record(
            conn,
            type="job.replayed",
            principal=principal,
            action="submit",
            target=f"job:{row.id}",
            allowed=True,
            details={"job": row.id},
        )
    return {"id": row.id, "status": row.status, "replayed": True}


def admit(
    gw: Gateway,
    conn: sa.Connection,
    principal: Principal,
    *,
    stored: StoredTemplate,
    datasets: dict[str, DatasetSpec],
    job_id: str,
    key: str | None,
    request: str,
) -> dict[str, Any]:
    """Inside the job's transaction: remember the key, reserve a dp job's budget.
    Returns audit details (the reserved cost); raises BudgetExhausted."""
    if key is not None:
        conn.execute(
            schema.idempotency_keys.insert().values(
                department=principal.department,
                key=key,
                request_hash=request,
                job_id=job_id,
                created_at=datetime.now(UTC),
            )
        )
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
