"""Findings in the responsible department's inbox: delivered with the comparison's release,
acknowledged and closed there with a note; counts for the requester and the auditor.

Only the department a finding is routed to ever sees its key (`GET /v1/findings`); the
requesting department sees counts by type, district and state (`GET /v1/findings/summary`).
Every delivery, acknowledgement and closure is an audit entry (keys as keyed fingerprints).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from audit import Actor
from gateway.auth.principal import Principal
from gateway.authz import require
from gateway.context import Gateway
from gateway.errors import Conflict, NotFound
from gateway.store import db, schema
from gateway.store.schema import TS

F = schema.findings.c
STATES = ("open", "acknowledged", "closed")


def deliver(
    conn: sa.Connection, gw: Gateway, job: Any, actor: Actor, findings: Sequence[dict[str, Any]]
) -> None:
    """Store a comparison's findings and audit one delivery per receiving department."""
    now = datetime.now(UTC)
    rows = [
        {
            "id": str(uuid.uuid4()),
            "job_id": job.id,
            "template_id": job.template_id,
            "requester": job.department,
            "department": f["department"],
            "finding_type": f["type"],
            "key": f["key"][:200],
            "district": f["district"],
            "fields": f["fields"],
            "state": "open",
            "note": "",
            "created_at": now,
            "updated_at": now,
        }
        for f in findings
    ]
    if rows:
        conn.execute(schema.findings.insert(), rows)
    per_department: dict[str, Counter[str]] = {}
    for f in findings:
        per_department.setdefault(f["department"], Counter())[f["type"]] += 1
    for department, types in sorted(per_department.items()):
        keys = sorted(f["key"] for f in findings if f["department"] == department)
        gw.audit.record(
            conn,
            type="finding.delivered",
            principal=actor,
            action="deliver",
            target=f"department:{department}",
            allowed=True,
            details={
                "job": job.id,
                "template": job.template_id,
                "department": department,
                "findings": dict(types),
                "keys": gw.audit.fingerprint(keys),
            },
        )


def _view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "type": row.finding_type,
        "key": row.key,
        "district": row.district,
        "fields": row.fields,
        "state": row.state,
        "note": row.note,
        "template": row.template_id,
        "requester": row.requester,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


def inbox(
    gw: Gateway,
    principal: Principal,
    *,
    state: str | None = None,
    limit: int = 500,
    offset: int = 0,
) -> dict[str, Any]:
    """Findings routed to the caller's department (the only place their keys are shown), a
    page at a time, with the total."""
    require(
        gw,
        principal,
        "finding",
        "read",
        event="finding.denied",
        target="findings",
        read_event="finding.read",
    )
    where = [F.department == principal.department]
    if state is not None:
        where.append(F.state == state)
    with db.reading(gw.db) as conn:
        rows = conn.execute(
            sa.select(schema.findings)
            .where(*where)
            .order_by(F.created_at, F.id)
            .limit(limit)
            .offset(offset)
        ).all()
        total = conn.execute(sa.select(sa.func.count()).where(*where)).scalar_one()
    return {"items": [_view(r) for r in rows], "total": int(total)}


def summary(gw: Gateway, principal: Principal) -> list[dict[str, Any]]:
    """Counts by routed department, type, district and state of the findings the caller's
    department's comparisons produced: no keys."""
    require(gw, principal, "finding", "read", event="finding.denied", target="findings")
    with db.reading(gw.db) as conn:
        rows = conn.execute(
            sa.select(F.department, F.finding_type, F.district, F.state, sa.func.count())
            .where(F.requester == principal.department)
            .group_by(F.department, F.finding_type, F.district, F.state)
            .order_by(F.department, F.finding_type, F.district, F.state)
        ).all()
    return [
        {"routed_to": d, "type": t, "district": dist, "state": s, "findings": int(n)}
        for d, t, dist, s, n in rows
    ]


def transition(
    gw: Gateway, principal: Principal, finding_id: str, *, to: str, note: str
) -> dict[str, Any]:
    """Acknowledge or close a finding of the caller's department, with a note (audited)."""
    target = f"finding:{finding_id}"
    decision = require(gw, principal, "finding", "close", event="finding.denied", target=target)
    now = datetime.now(UTC)
    with gw.db.begin() as conn:
        row = conn.execute(sa.select(schema.findings).where(F.id == finding_id)).first()
        if row is None or row.department != principal.department:
            raise NotFound("no such finding")  # another department's finding looks missing
        allowed_from = {"acknowledged": {"open"}, "closed": {"open", "acknowledged"}}[to]
        if row.state not in allowed_from:
            raise Conflict(f"the finding is {row.state}")
        conn.execute(
            schema.findings.update()
            .where(F.id == finding_id)
            .values(state=to, note=note, updated_at=now, closed_at=now if to == "closed" else None)
        )
        gw.audit.record(
            conn,
            type=f"finding.{to}",
            principal=principal,
            action="close" if to == "closed" else "acknowledge",
            target=target,
            allowed=True,
            rule=decision.rule,
            details={
                "finding": finding_id,
                "job": row.job_id,
                "template": row.template_id,
                "type": row.finding_type,
                "key": gw.audit.fingerprint(row.key),
                "note": note,
                "policy_version": decision.policy_version,
            },
        )
        updated = conn.execute(sa.select(schema.findings).where(F.id == finding_id)).one()
    return _view(updated)


def stats(gw: Gateway, principal: Principal) -> list[dict[str, Any]]:
    """Open, acknowledged and closed findings per department, with the oldest open one's age
    (for the auditor's statistics): counts only."""
    require(gw, principal, "audit", "read", event="audit.denied", target="audit:findings")
    with db.reading(gw.db) as conn:
        return counts(conn)


def counts(conn: sa.Connection) -> list[dict[str, Any]]:
    """Per department: findings in each state and the oldest unclosed one's age in days."""
    now = datetime.now(UTC)
    rows = conn.execute(
        sa.select(
            F.department,
            F.state,
            sa.func.count(),
            sa.type_coerce(sa.func.min(F.created_at), TS),
        )
        .group_by(F.department, F.state)
        .order_by(F.department, F.state)
    ).all()
    out: dict[str, dict[str, Any]] = {}
    for department, state, n, oldest in rows:
        item = out.setdefault(
            department,
            {"department": department, **dict.fromkeys(STATES, 0), "oldest_open_days": None},
        )
        item[state] = int(n)
        if state != "closed" and oldest is not None:
            age = round((now - oldest).total_seconds() / 86400, 2)
            current = item["oldest_open_days"]
            item["oldest_open_days"] = age if current is None else max(current, age)
    return list(out.values())
