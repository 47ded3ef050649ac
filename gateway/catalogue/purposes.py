"""Purposes: the condition of 有条件共享 (conditional sharing).

    requested ──(the dataset's owner approves, with an expiry)──▶ approved ──(time)──▶ expired
        └─────(the dataset's owner rejects)───────────────────▶ rejected

A requesting department asks a dataset's owner for a purpose ("compliance review of the 2024
filings"); the owner approves it until a date. A job that reads a conditionally shared dataset
names, by id, an approved, unexpired purpose of the job's department for that dataset; otherwise
it is refused with reason code `missing_purpose`, `missing_approval` or `expired_purpose`, naming
the dataset (`gateway.jobs.admission` decides; this module keeps the purposes).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from gateway.auth.principal import Principal
from gateway.authz import deny, require
from gateway.catalogue import registry as catalogue
from gateway.catalogue.documents import ShareClass
from gateway.context import Gateway
from gateway.errors import Conflict, InvalidInput, NotFound
from gateway.store import db, schema

MAX_VALIDITY = timedelta(days=366)


class PurposeStatus(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class PurposeFacts:
    """A purpose as the admission decision sees it (`gateway.jobs.admission`)."""

    id: str
    dataset: str
    department: str
    status: str  # requested | approved | rejected
    expires_at: datetime | None

    def in_force(self, now: datetime) -> bool:
        return (
            self.status == PurposeStatus.APPROVED.value
            and self.expires_at is not None
            and self.expires_at > now
        )


def view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "dataset": row.dataset_id,
        "department": row.department,
        "purpose": row.purpose,
        "status": row.status,
        "requested_by": row.requested_by,
        "requested_at": row.requested_at.isoformat(),
        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
        "decided_by": row.decided_by,
        "decided_at": row.decided_at.isoformat() if row.decided_at else None,
    }


def request(gw: Gateway, principal: Principal, dataset_id: str, text: str) -> dict[str, Any]:
    target = f"dataset:{dataset_id}"
    decision = require(gw, principal, "job", "submit", event="purpose.denied", target=target)
    if not text.strip():
        raise InvalidInput("state the purpose")
    with db.reading(gw.db) as conn:
        ds = catalogue.get(conn, dataset_id)
    if ds.share_class is not ShareClass.CONDITIONAL:
        raise InvalidInput(f"dataset {ds.id} is not conditionally shared: no purpose is needed")
    purpose_id = str(uuid.uuid4())
    with gw.db.begin() as conn:
        conn.execute(
            schema.purposes.insert().values(
                id=purpose_id,
                dataset_id=ds.id,
                department=principal.department,
                purpose=text.strip(),
                status=PurposeStatus.REQUESTED.value,
                requested_by=principal.subject,
                requested_at=datetime.now(UTC),
            )
        )
        gw.audit.record(
            conn,
            type="purpose.requested",
            principal=principal,
            action="request",
            target=f"purpose:{purpose_id}",
            allowed=True,
            rule=decision.rule,
            details={
                "purpose_id": purpose_id,
                "dataset": ds.id,
                "purpose": gw.audit.fingerprint(text.strip()),
                "policy_version": decision.policy_version,
            },
        )
    return get(gw, purpose_id)


def decide(
    gw: Gateway,
    principal: Principal,
    purpose_id: str,
    *,
    approve: bool,
    expires_at: datetime | None,
) -> dict[str, Any]:
    """The dataset's owner approves (until `expires_at`) or rejects a requested purpose."""
    target = f"purpose:{purpose_id}"
    decision = require(gw, principal, "template", "approve", event="purpose.denied", target=target)
    with db.reading(gw.db) as conn:
        row = _load(conn, purpose_id)
        ds = catalogue.get(conn, row.dataset_id)
    if ds.provider != principal.department:
        raise deny(
            gw,
            principal,
            event="purpose.denied",
            action="approve",
            target=target,
            reason=f"only the data owner of {ds.id} may decide on purposes for it",
            policy_version=decision.policy_version,
            details={"dataset": ds.id},
        )
    now = datetime.now(UTC)
    if approve:
        if expires_at is None or expires_at.tzinfo is None:
            raise InvalidInput("an approval needs expires_at, a timezone-aware time")
        if not now < expires_at <= now + MAX_VALIDITY:
            raise InvalidInput("expires_at must be in the future and within 366 days")
    status = PurposeStatus.APPROVED if approve else PurposeStatus.REJECTED
    with gw.db.begin() as conn:
        updated = conn.execute(
            schema.purposes.update()
            .where(
                schema.purposes.c.id == purpose_id,
                schema.purposes.c.status == PurposeStatus.REQUESTED.value,
            )
            .values(
                status=status.value,
                expires_at=expires_at if approve else None,
                decided_by=principal.subject,
                decided_at=now,
            )
        )
        if updated.rowcount != 1:
            raise Conflict("the purpose was decided already")
        gw.audit.record(
            conn,
            type=f"purpose.{status.value}",
            principal=principal,
            action="approve",
            target=target,
            allowed=True,
            rule=decision.rule,
            details={
                "purpose_id": purpose_id,
                "dataset": ds.id,
                "department": row.department,
                "expires_at": expires_at.isoformat() if approve and expires_at else None,
                "policy_version": decision.policy_version,
            },
        )
    return get(gw, purpose_id)


def list_visible(gw: Gateway, principal: Principal) -> list[dict[str, Any]]:
    """The caller's department's purposes, and those asked of its own datasets."""
    require(
        gw,
        principal,
        "catalogue",
        "read",
        event="purpose.denied",
        target="purposes",
        read_event="purpose.read",
    )
    p = schema.purposes
    with db.reading(gw.db) as conn:
        owned = sa.select(schema.datasets.c.id).where(
            schema.datasets.c.provider == principal.department
        )
        rows = conn.execute(
            sa.select(p)
            .where(sa.or_(p.c.department == principal.department, p.c.dataset_id.in_(owned)))
            .order_by(p.c.requested_at)
        ).all()
    return [view(r) for r in rows]


def get(gw: Gateway, purpose_id: str) -> dict[str, Any]:
    with db.reading(gw.db) as conn:
        return view(_load(conn, purpose_id))


def _load(conn: sa.Connection, purpose_id: str) -> Any:
    row = conn.execute(sa.select(schema.purposes).where(schema.purposes.c.id == purpose_id)).first()
    if row is None:
        raise NotFound("no such purpose")
    return row


def named(conn: sa.Connection, ids: Sequence[str]) -> tuple[list[PurposeFacts], list[str]]:
    """The purposes a job names, as the store holds them, and the ids it does not hold."""
    if not ids:
        return [], []
    p = schema.purposes
    rows = conn.execute(
        sa.select(p.c.id, p.c.dataset_id, p.c.department, p.c.status, p.c.expires_at).where(
            p.c.id.in_(list(ids))
        )
    ).all()
    found = {
        r.id: PurposeFacts(r.id, r.dataset_id, r.department, r.status, r.expires_at) for r in rows
    }
    return [found[i] for i in ids if i in found], [i for i in ids if i not in found]
