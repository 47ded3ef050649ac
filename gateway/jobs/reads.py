"""Reads of a job: its status and its released result with a receipt."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gateway import timing
from gateway.auth.principal import Principal
from gateway.authz import require
from gateway.catalogue import templates
from gateway.context import Gateway
from gateway.errors import NotFound
from gateway.jobs import model
from gateway.jobs.model import (
    TERMINAL,
    Job,
    JobStatus,
    StoredResult,
    job_view,
    load_job,
    load_job_and_result,
)
from gateway.store import db


def _visible(
    gw: Gateway, principal: Principal, job_id: str, action_obj: str, *, audit_read: bool = False
) -> Job:
    require(gw, principal, action_obj, "read", event=f"{action_obj}.denied", target=f"job:{job_id}")
    with db.reading(gw.db) as conn:
        row = load_job(conn, job_id)
    _own(principal, row)
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


def _own(principal: Principal, row: Job) -> None:
    if row.department != principal.department:
        # Another department's job looks exactly like a missing one.
        raise NotFound("no such job")


def show(gw: Gateway, principal: Principal, job_id: str) -> dict[str, Any]:
    return job_view(_visible(gw, principal, job_id, "job", audit_read=True))


def result_look(
    gw: Gateway, principal: Principal, job_id: str, *, waiting: bool = False
) -> tuple[Job, StoredResult | None]:
    """The job whose result the caller asks for (authorized, of its own department) and its
    stored result (None until released), in one query. `waiting`: the caller waits for the
    end, so a job a worker of this replica runs is taken as that worker was given it (its
    end will be handed to the wait: `Handoffs`), with no query."""
    require(gw, principal, "result", "read", event="result.denied", target=f"job:{job_id}")
    running = gw.handoffs.running(job_id) if waiting else None
    if running is not None:
        _own(principal, running)
        return running, None
    with db.reading(gw.db) as conn:
        row, stored = load_job_and_result(conn, job_id)
    _own(principal, row)
    return row, stored


def may_read_result(gw: Gateway, principal: Principal, job_id: str) -> None:
    """`result_look`'s authorization for a job the caller has just submitted (so of its own
    department, as submitting a job makes it): the policy's word, no read of the job."""
    require(gw, principal, "result", "read", event="result.denied", target=f"job:{job_id}")


def result(gw: Gateway, principal: Principal, row: Job, res: StoredResult | None) -> dict[str, Any]:
    """What the caller gets for a job as it stands, read with its stored result `res`
    (`result_look`; see `gateway.jobs.waits` to wait for its end): the status, and once
    released the result with its receipt."""
    if JobStatus(row.status) not in TERMINAL:
        return {"job": job_view(row), "status": row.status}
    job_id = row.id
    body: dict[str, Any] = {"job": job_view(row), "status": row.status}
    if res is not None:
        release = res.audit_index
        # Fail closed: the read is durable in the log before anything is handed out, and the
        # same group commit returns a checkpoint that covers the release entry.
        with timing.stage("audit"):
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
        with timing.stage("receipt"):
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


MAX_PAGE = 500


def listing(
    gw: Gateway,
    principal: Principal,
    *,
    status: str | None = None,
    template: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    scope: str = "mine",
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    """The caller's jobs (``scope=department``: its department's), newest first, one page.

    ``next`` is the offset of the next page, or None. The read is audited like `show`."""
    require(gw, principal, "job", "read", event="job.denied", target="jobs")
    limit = max(1, min(limit, MAX_PAGE))
    with db.reading(gw.db) as conn:
        jobs = model.list_jobs(
            conn,
            department=principal.department,
            subject=principal.subject if scope == "mine" else None,
            status=status,
            template=template,
            since=since,
            until=until,
            limit=limit + 1,
            offset=offset,
        )
        kinds = templates.kinds(conn, {(j.template_id, j.version) for j in jobs})
    more = len(jobs) > limit
    items = [{**job_view(j), "kind": kinds.get((j.template_id, j.version))} for j in jobs[:limit]]
    gw.audit.record_durable(
        type="job.read",
        principal=principal,
        action="read",
        target="jobs",
        allowed=True,
        details={"scope": scope, "count": len(items)},
    )
    return {"items": items, "next": offset + limit if more else None}


def queue_depth(gw: Gateway) -> dict[str, int]:
    """Jobs waiting for a worker (`accepted`) and running, across every replica."""
    with db.reading(gw.db) as conn:
        return model.count_unfinished(conn)
