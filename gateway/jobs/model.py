"""A job's states and its stored row as the API shows it.

    accepted ──▶ running ──▶ released | suppressed | failed
    (a refused submission creates no job: it is audited as `job.denied` / `job.rejected`)

`gateway.jobs.worker` is the only module that moves a job between states.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from gateway.errors import NotFound
from gateway.store import schema


class JobStatus(StrEnum):
    ACCEPTED = "accepted"
    RUNNING = "running"
    RELEASED = "released"
    SUPPRESSED = "suppressed"
    FAILED = "failed"


TERMINAL = {JobStatus.RELEASED, JobStatus.SUPPRESSED, JobStatus.FAILED}


def load_job(conn: sa.Connection, job_id: str) -> sa.Row[Any]:
    row = conn.execute(sa.select(schema.jobs).where(schema.jobs.c.id == job_id)).first()
    if row is None:
        raise NotFound("no such job")
    return row


def job_view(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "status": row.status,
        "template": row.template_id,
        "version": row.version,
        "content_hash": row.content_hash,
        "subject": row.subject,
        "department": row.department,
        "purpose": row.purpose,
        "parameters": row.parameters,
        "created_at": row.created_at.isoformat(),
        "started_at": row.started_at.isoformat() if row.started_at else None,
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
        "error": row.error,
        "audit_index": row.audit_index,
    }
