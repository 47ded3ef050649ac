"""Reads of a job: its status and its released result with a receipt."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from gateway.auth.principal import Principal
from gateway.authz import require
from gateway.context import Gateway
from gateway.errors import NotFound
from gateway.jobs.model import TERMINAL, JobStatus, job_view, load_job
from gateway.store import db, schema


def _visible(
    gw: Gateway, principal: Principal, job_id: str, action_obj: str, *, audit_read: bool = False
) -> sa.Row[Any]:
    require(gw, principal, action_obj, "read", event=f"{action_obj}.denied", target=f"job:{job_id}")
    with db.reading(gw.db) as conn:
        row = load_job(conn, job_id)
    if row.department != principal.department:
        # Another department's job looks exactly like a missing one.
        raise NotFound("no such job")
    if audit_read:
        gw.audit.record_durable(
            type=f"{action_obj}.read",
            principal=principal,
            action="read",
            target=f"job:{job_id}",
            allowed=True,
            details={"job": job_id, "status": row.status},
        )
    return row


def show(gw: Gateway, principal: Principal, job_id: str) -> dict[str, Any]:
    return job_view(_visible(gw, principal, job_id, "job", audit_read=True))


def result(gw: Gateway, principal: Principal, job_id: str, *, wait_s: float) -> dict[str, Any]:
    row = _visible(gw, principal, job_id, "result")
    deadline = time.monotonic() + max(0.0, min(wait_s, 300.0))
    while JobStatus(row.status) not in TERMINAL:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return {"job": job_view(row), "status": row.status}
        seen = gw.jobs_finished.generation()
        with db.reading(gw.db) as conn:
            row = load_job(conn, job_id)
        if JobStatus(row.status) not in TERMINAL:
            # Another replica may finish it: wake up now and then to look.
            gw.jobs_finished.wait(seen, timeout=min(remaining, 0.5))
    with db.reading(gw.db) as conn:  # no write lock to read a stored result
        res = conn.execute(
            sa.select(schema.job_results).where(schema.job_results.c.job_id == job_id)
        ).first()
    body: dict[str, Any] = {"job": job_view(row), "status": row.status}
    if res is not None:
        release = int(res.audit_index)
        # Fail closed: the read is durable in the log before anything is handed out, and the
        # same group commit returns a checkpoint that covers the release entry.
        committed = gw.audit.record_durable(
            type="result.read",
            principal=principal,
            action="read",
            target=f"job:{job_id}",
            allowed=True,
            details={"job": job_id, "template": row.template_id, "release": release},
            covering=release + 1,
        )
        body.update(res.result)
        body["result_hash"] = res.result_hash
        body["receipt"] = receipt(gw, release, committed.checkpoint, committed.checkpoint_size)
    return body


def receipt(
    gw: Gateway, index: int, note: str | None = None, size: int | None = None
) -> dict[str, Any]:
    """Where the release sits in the audit log: index, entry, leaf hash, inclusion proof and a
    signed checkpoint covering it (the newest one the log signed, or a new one if none does)."""
    if note is None or size is None or size <= index:
        committed = gw.audit.committer.checkpoint(index + 1)
        assert committed.checkpoint is not None
        note, size = committed.checkpoint, committed.checkpoint_size
    return gw.audit.receipt(index, note=note, size=size)
