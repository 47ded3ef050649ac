"""Reading policy: the live or a stored version, history, diff between versions, YAML export,
proposals with their impact. Every read is a decision and is audited (`policy.read`) with the
granting rule and the policy version.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from gateway.auth.principal import Principal
from gateway.authz import require
from gateway.context import Gateway
from gateway.errors import NotFound
from gateway.store import db, schema
from gateway.store import policy_versions as policy_store
from policies import Decision, Rule, diff_rules, parse_rules, policy_to_yaml


def require_policy(gw: Gateway, principal: Principal, action: str, target: str) -> Decision:
    return require(gw, principal, "policy", action, event="policy.denied", target=target)


def record(
    gw: Gateway,
    conn: sa.Connection,
    principal: Principal,
    decision: Decision,
    *,
    type: str,
    action: str,
    target: str,
    details: dict[str, Any],
) -> int:
    return gw.audit.record(
        conn,
        type=type,
        principal=principal,
        action=action,
        target=target,
        allowed=True,
        rule=decision.rule,
        details={"decided_under": decision.policy_version, **details},
    )


def record_read(gw: Gateway, principal: Principal, decision: Decision, what: str) -> None:
    """Reads of policy are decisions too: each is audited with its rule and version."""
    with gw.db.begin() as conn:
        record(
            gw,
            conn,
            principal,
            decision,
            type="policy.read",
            action="read",
            target="policy",
            details={"policy_version": decision.policy_version, "read": what},
        )


def head(conn: sa.Connection) -> policy_store.StoredVersion:
    version = policy_store.newest_version(conn)
    if version is None:
        raise NotFound("the store has no policy; run `insitu init`")
    return policy_store.load_version(conn, version)


def load_proposal(conn: sa.Connection, proposal_id: str) -> sa.Row[Any]:
    row = conn.execute(
        sa.select(schema.policy_proposals).where(schema.policy_proposals.c.id == proposal_id)
    ).first()
    if row is None:
        raise NotFound("no such policy proposal")
    return row


def _proposal_view(
    row: sa.Row[Any], *, full: bool, base_rules: list[Rule] | None
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": row.id,
        "kind": row.kind,
        "status": row.status,
        "base_version": row.base_version,
        "rollback_to": row.rollback_to,
        "result_version": row.result_version,
        "added_count": row.added,
        "removed_count": row.removed,
        "note": row.note,
        "proposed_by": row.proposed_by,
        "proposed_by_department": row.proposed_by_department,
        "proposed_at": row.proposed_at.isoformat(),
        "decided_by": row.decided_by,
        "decided_at": row.decided_at.isoformat() if row.decided_at else None,
        "comment": row.comment,
        "impact_summary": row.impact.get("summary", {}),
    }
    if full and base_rules is not None:
        added, removed = diff_rules(base_rules, parse_rules(row.rules))
        view["added"] = [r.text() for r in added]
        view["removed"] = [r.text() for r in removed]
        view["impact"] = row.impact
    return view


def show_proposal(
    gw: Gateway, principal: Principal, proposal_id: str, *, audit: bool = True
) -> dict[str, Any]:
    decision = require_policy(gw, principal, "read", f"policy-proposal:{proposal_id}")
    with db.reading(gw.db) as conn:
        row = load_proposal(conn, proposal_id)
        base = policy_store.load_version(conn, row.base_version)
    if audit:
        record_read(gw, principal, decision, f"proposal {proposal_id}")
    return _proposal_view(row, full=True, base_rules=base.rules)


def list_proposals(gw: Gateway, principal: Principal, *, status: str | None) -> dict[str, Any]:
    decision = require_policy(gw, principal, "read", "policy")
    p = schema.policy_proposals
    columns = [c for c in p.c if c.name != "rules"]
    query = sa.select(*columns).order_by(p.c.proposed_at.desc()).limit(500)
    if status is not None:
        query = query.where(p.c.status == status)
    with db.reading(gw.db) as conn:
        rows = conn.execute(query).all()
    record_read(gw, principal, decision, "proposals")
    return {"items": [_proposal_view(r, full=False, base_rules=None) for r in rows]}


def history(gw: Gateway, principal: Principal) -> dict[str, Any]:
    decision = require_policy(gw, principal, "read", "policy")
    v = schema.policy_versions
    with db.reading(gw.db) as conn:
        rows = conn.execute(
            sa.select(
                v.c.version,
                v.c.created_by,
                v.c.created_at,
                v.c.note,
                v.c.base_version,
                v.c.proposal_id,
                v.c.approved_by,
            ).order_by(v.c.version.desc())
        ).all()
    record_read(gw, principal, decision, "history")
    return {
        "items": [
            {
                "version": r.version,
                "created_by": r.created_by,
                "created_at": r.created_at.isoformat(),
                "note": r.note,
                "base_version": r.base_version,
                "proposal": r.proposal_id,
                "approved_by": r.approved_by,
            }
            for r in rows
        ]
    }


def diff(
    gw: Gateway, principal: Principal, *, from_version: int, to_version: int
) -> dict[str, Any]:
    decision = require_policy(gw, principal, "read", "policy")
    with db.reading(gw.db) as conn:
        old = policy_store.load_version(conn, from_version)
        new = policy_store.load_version(conn, to_version)
    added, removed = diff_rules(old.rules, new.rules)
    record_read(gw, principal, decision, f"diff {from_version}..{to_version}")
    return {
        "from": from_version,
        "to": to_version,
        "added": [r.text() for r in added],
        "removed": [r.text() for r in removed],
    }


def export(gw: Gateway, principal: Principal, *, version: int | None) -> str:
    decision = require_policy(gw, principal, "read", "policy")
    with db.reading(gw.db) as conn:
        stored = head(conn) if version is None else policy_store.load_version(conn, version)
    record_read(gw, principal, decision, f"export {stored.version}")
    return policy_to_yaml(stored.rules, version=stored.version)


def current(gw: Gateway, principal: Principal, *, version: int | None) -> dict[str, Any]:
    decision = require_policy(gw, principal, "read", "policy")
    if version is None:
        engine = gw.policy.current()
        number, rules = engine.version, list(engine.rules())
    else:
        with db.reading(gw.db) as conn:
            stored = policy_store.load_version(conn, version)
        number, rules = stored.version, stored.rules
    record_read(gw, principal, decision, f"version {number}")
    return {"version": number, "rules": [r.text() for r in rules]}
