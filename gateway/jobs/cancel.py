"""Cancelling a job: its department takes back a job that has not finished.

An accepted job never runs; a running one is marked cancelled at once and the worker, finding
it no longer running when it ends, drops its outcome (nothing is released). Either way a `dp`
job's budget reservation is returned in the same transaction as the `job.cancelled` entry —
exactly once, since `ledger.settle` only settles a reservation still `reserved`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.auth.principal import Principal
from gateway.authz import require
from gateway.context import Gateway
from gateway.dp import ledger
from gateway.errors import Conflict, NotFound
from gateway.jobs import model
from gateway.jobs.model import JobStatus
from gateway.jobs.verify_keys import forget_keys
from gateway.store import db


def cancel(gw: Gateway, principal: Principal, job_id: str) -> dict[str, Any]:
    target = f"job:{job_id}"
    decision = require(gw, principal, "job", "submit", event="job.denied", target=target)
    with db.reading(gw.db) as conn:
        job = model.load_job(conn, job_id)
    if job.department != principal.department:
        raise NotFound("no such job")  # another department's job looks like a missing one
    now = datetime.now(UTC)
    with gw.db.begin() as conn:
        if not model.cancel(conn, job_id, now=now):
            raise Conflict(f"the job has already ended ({model.load_job(conn, job_id).status})")
        details: dict[str, Any] = {
            "job": job_id,
            "template": job.template_id,
            "version": job.version,
            "was": job.status,
            "policy_version": decision.policy_version,
        }
        details.update(ledger.settle(conn, job_id, released=False))
        gw.audit.record(
            conn,
            type="job.cancelled",
            principal=principal,
            action="cancel",
            target=target,
            allowed=True,
            rule=decision.rule,
            details=details,
        )
    forget_keys(gw, job_id)  # a verify job's keys are not kept for a job that will not answer
    gw.handoffs.stopped(job_id)  # ended: a wait from now on reads the store (`Handoffs`)
    gw.jobs_finished.notify(job_id)
    return {"id": job_id, "status": JobStatus.CANCELLED.value}
