"""`Idempotency-Key`: a retried submission returns the job the first one created.

A key is remembered per department with a hash of the request body, in the transaction that
writes the job row; the same key again returns the same job (for a `dp` job, the same stored
noisy answer, never a fresh draw); the same key with a different body is a conflict. This
module owns the `idempotency_keys` table.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from gateway.auth.principal import Principal
from gateway.context import Gateway
from gateway.errors import Conflict, InvalidInput
from gateway.store import db, schema

MAX_KEY = 200


def request_hash(
    template_id: str,
    version: int | None,
    parameters: Any,
    purpose: str,
    purposes: Sequence[str] = (),
) -> str:
    body: dict[str, Any] = {
        "template": template_id,
        "version": version,
        "parameters": parameters,
        "purpose": purpose,
    }
    if purposes:  # absent when empty: keys stored before `purposes` existed keep their hash
        body["purposes"] = list(purposes)
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


def remember(
    conn: sa.Connection, principal: Principal, *, key: str | None, request: str, job_id: str
) -> None:
    """Inside the job's transaction: remember the key (a concurrent twin fails on its
    primary key, and its submission replays this one)."""
    if key is None:
        return
    conn.execute(
        schema.idempotency_keys.insert().values(
            department=principal.department,
            key=key,
            request_hash=request,
            job_id=job_id,
            created_at=datetime.now(UTC),
        )
    )
