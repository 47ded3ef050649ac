"""Policy administration: four-eyes changes, rollback and import (reads: `policy_reads.py`).

    proposed ──(a second officer approves)──▶ approved   (a new policy version is live)
        ├────(an officer rejects)────────────▶ rejected
        └────(the policy moved on first)─────▶ stale      (approval refused: propose again)

A proposal is a whole new rule set computed from the newest version in the store (never from a
worker's cached engine) with the batch of changes applied; `rollback` proposes an old version's
rules and `import` a YAML document's, both as ordinary four-eyes proposals. The proposer can
never approve (subjects compared case- and Unicode-insensitively). Approval writes the version
compare-and-set on the proposal's base (`policy_store.save_version`), so a stale proposal or a
racing approver cannot overwrite a newer version. Every proposal, approval, rejection and
refusal is audited with the actor, the policy version and the granting rule.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from gateway.auth.principal import Principal, same_person
from gateway.authz import deny
from gateway.context import Gateway
from gateway.errors import Conflict, InvalidInput
from gateway.policy.impact import impact
from gateway.policy.reads import head, load_proposal, record, require_policy, show_proposal
from gateway.store import db, schema
from gateway.store import policy_versions as policy_store
from policies import (
    Decision,
    PolicyEngine,
    Rule,
    diff_rules,
    format_rules,
    parse_rules,
    policy_from_yaml,
)

MAX_CHANGES = 100_000
FOUR_EYES = "four_eyes"
#: The role that edits policy. Separation of duties: whatever two officers agree on, they may
#: never grant their own role data, results or the audit log (DESIGN: officers never read
#: results), so policy administration cannot turn into data access.
OFFICER_ROLE = "security_officer"
OFFICER_OBJECTS = frozenset({"policy"})


class Status(StrEnum):
    PROPOSED = "proposed"
    APPROVED = "approved"
    REJECTED = "rejected"
    STALE = "stale"


class Kind(StrEnum):
    CHANGE = "change"
    ROLLBACK = "rollback"
    IMPORT = "import"


def _texts(rules: list[Rule], limit: int = 200) -> list[str]:
    return [r.text() for r in rules[:limit]]


def _engine_of(gw: Gateway, version: policy_store.StoredVersion) -> PolicyEngine:
    live = gw.policy.current()
    if live.version == version.version:
        return live
    return PolicyEngine.from_rules(version.rules, version=version.version)


def _create(
    gw: Gateway,
    principal: Principal,
    decision: Decision,
    *,
    kind: Kind,
    base: policy_store.StoredVersion,
    rules: list[Rule],
    note: str,
    rollback_to: int | None = None,
) -> dict[str, Any]:
    added, removed = diff_rules(base.rules, rules)
    for rule in added:
        if rule.role == OFFICER_ROLE and rule.obj not in OFFICER_OBJECTS:
            raise InvalidInput(
                f"rule '{rule.text()}' would give security officers a right outside policy "
                "administration; officers never query data or read results"
            )
    if not added and not removed:
        raise InvalidInput(f"the proposal changes nothing in policy version {base.version}")
    proposed = PolicyEngine.from_rules(rules, version=base.version + 1)
    proposal_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    with db.reading(gw.db) as conn:  # outside the write transaction: it may take a while
        report = impact(conn, _engine_of(gw, base), proposed, [*added, *removed])
    with gw.db.begin() as conn:
        conn.execute(
            schema.policy_proposals.insert().values(
                id=proposal_id,
                kind=kind.value,
                status=Status.PROPOSED.value,
                base_version=base.version,
                rollback_to=rollback_to,
                rules=format_rules(rules),
                added=len(added),
                removed=len(removed),
                impact=report,
                note=note,
                proposed_by=principal.subject,
                proposed_by_department=principal.department,
                proposed_at=now,
                comment="",
            )
        )
        record(
            gw,
            conn,
            principal,
            decision,
            type="policy.rollback_proposed" if kind is Kind.ROLLBACK else "policy.proposed",
            action="propose",
            target=f"policy-proposal:{proposal_id}",
            details={
                "proposal": proposal_id,
                "kind": kind.value,
                "policy_version": base.version,
                "base_version": base.version,
                "rollback_to": rollback_to,
                "added": _texts(added),
                "removed": _texts(removed),
                "added_count": len(added),
                "removed_count": len(removed),
                "impact": report["summary"],
                "note": note,
            },
        )
    return show_proposal(gw, principal, proposal_id, audit=False)


def _check_base(head: int, base_version: int | None) -> None:
    if base_version is not None and base_version != head:
        raise Conflict(
            f"the policy is at version {head}, not {base_version}; review it and propose again",
            policy_version=head,
        )


def propose(
    gw: Gateway,
    principal: Principal,
    *,
    add: list[Rule],
    remove: list[Rule],
    note: str,
    base_version: int | None = None,
) -> dict[str, Any]:
    """A batch of rules to add and remove, applied to the newest version."""
    decision = require_policy(gw, principal, "propose", "policy")
    if len(add) + len(remove) > MAX_CHANGES:
        raise InvalidInput(f"a proposal holds at most {MAX_CHANGES} changes")
    with db.reading(gw.db) as conn:
        base = head(conn)
    _check_base(base.version, base_version)
    current = set(base.rules)
    for rule in remove:
        if rule not in current:
            raise InvalidInput(f"rule '{rule.text()}' is not in policy version {base.version}")
    for rule in add:
        if rule in current:
            raise InvalidInput(f"rule '{rule.text()}' is already in policy version {base.version}")
    dropped = set(remove)
    rules = [r for r in base.rules if r not in dropped] + list(dict.fromkeys(add))
    return _create(gw, principal, decision, kind=Kind.CHANGE, base=base, rules=rules, note=note)


def rollback(gw: Gateway, principal: Principal, *, to_version: int, note: str) -> dict[str, Any]:
    """Propose the rules of an earlier version as the next version (four-eyes like any change)."""
    decision = require_policy(gw, principal, "propose", "policy")
    with db.reading(gw.db) as conn:
        base = head(conn)
        target = policy_store.load_version(conn, to_version)
    note = note or f"rollback to version {to_version}"
    return _create(
        gw,
        principal,
        decision,
        kind=Kind.ROLLBACK,
        base=base,
        rules=target.rules,
        note=note,
        rollback_to=to_version,
    )


def import_document(
    gw: Gateway, principal: Principal, document: bytes | str, *, note: str
) -> dict[str, Any]:
    """Propose the rules of a YAML policy document (from git) as the next version."""
    decision = require_policy(gw, principal, "propose", "policy")
    rules, _ = policy_from_yaml(document)
    with db.reading(gw.db) as conn:
        base = head(conn)
    return _create(
        gw,
        principal,
        decision,
        kind=Kind.IMPORT,
        base=base,
        rules=list(dict.fromkeys(rules)),
        note=note or "imported",
    )


def _claim(
    conn: sa.Connection, proposal_id: str, status: Status, principal: Principal, comment: str
) -> None:
    p = schema.policy_proposals
    claimed = conn.execute(
        p.update()
        .where(p.c.id == proposal_id, p.c.status == Status.PROPOSED.value)
        .values(
            status=status.value,
            decided_by=principal.subject,
            decided_at=datetime.now(UTC),
            comment=comment,
        )
    ).rowcount
    if claimed != 1:
        raise Conflict("the proposal has already been decided")


def approve(gw: Gateway, principal: Principal, proposal_id: str, *, comment: str) -> dict[str, Any]:
    """The second officer's approval: the proposal becomes the next policy version."""
    target = f"policy-proposal:{proposal_id}"
    decision = require_policy(gw, principal, "approve", target)
    with db.reading(gw.db) as conn:
        row = load_proposal(conn, proposal_id)
    if row.status != Status.PROPOSED.value:
        reason = f"the proposal is {row.status}, not proposed"
        _refuse(gw, principal, decision, row, reason, action="approve", code="decided")
        raise Conflict(reason)
    if same_person(row.proposed_by, principal.subject):
        raise deny(
            gw,
            principal,
            event="policy.denied",
            action="approve",
            target=target,
            reason="four eyes: the officer who proposed a policy change cannot approve it",
            policy_version=decision.policy_version,
            reason_code=FOUR_EYES,
            details={"proposal": proposal_id},
        )
    kind = Kind(row.kind)
    try:
        with gw.db.begin() as conn:
            _claim(conn, proposal_id, Status.APPROVED, principal, comment)
            version = policy_store.save_version(
                conn,
                parse_rules(row.rules),
                created_by=row.proposed_by,
                note=row.note,
                base_version=row.base_version,
                proposal_id=proposal_id,
                approved_by=principal.subject,
            )
            conn.execute(
                schema.policy_proposals.update()
                .where(schema.policy_proposals.c.id == proposal_id)
                .values(result_version=version)
            )
            record(
                gw,
                conn,
                principal,
                decision,
                type="policy.rolled_back" if kind is Kind.ROLLBACK else "policy.approved",
                action="approve",
                target=f"policy:{version}",
                details={
                    "proposal": proposal_id,
                    "kind": kind.value,
                    "policy_version": version,
                    "base_version": row.base_version,
                    "rollback_to": row.rollback_to,
                    "proposed_by": row.proposed_by,
                    "added_count": row.added,
                    "removed_count": row.removed,
                },
            )
    except Conflict as exc:
        _refuse(gw, principal, decision, row, str(exc), action="approve", code="stale")
        raise
    gw.policy.invalidate()
    return show_proposal(gw, principal, proposal_id, audit=False)


def _refuse(
    gw: Gateway,
    principal: Principal,
    decision: Decision,
    row: sa.Row[Any],
    reason: str,
    *,
    action: str,
    code: str,
) -> None:
    """Record a refused approval or rejection; a proposal whose base is no longer newest is
    marked stale."""
    p = schema.policy_proposals
    with gw.db.begin() as conn:
        head = policy_store.newest_version(conn)
        if head != row.base_version:
            conn.execute(
                p.update()
                .where(p.c.id == row.id, p.c.status == Status.PROPOSED.value)
                .values(status=Status.STALE.value)
            )
        gw.audit.record(
            conn,
            type="policy.approval_refused" if action == "approve" else "policy.rejection_refused",
            principal=principal,
            action=action,
            target=f"policy-proposal:{row.id}",
            allowed=False,
            rule=decision.rule,
            reason=reason,
            details={
                "proposal": row.id,
                "base_version": row.base_version,
                "policy_version": head,
                "reason_code": code,
            },
        )


def reject(gw: Gateway, principal: Principal, proposal_id: str, *, comment: str) -> dict[str, Any]:
    target = f"policy-proposal:{proposal_id}"
    decision = require_policy(gw, principal, "approve", target)
    with db.reading(gw.db) as conn:
        row = load_proposal(conn, proposal_id)
    try:
        _reject(gw, principal, decision, row, comment)
    except Conflict as exc:
        _refuse(gw, principal, decision, row, str(exc), action="reject", code="decided")
        raise
    return show_proposal(gw, principal, proposal_id, audit=False)


def _reject(
    gw: Gateway, principal: Principal, decision: Decision, row: sa.Row[Any], comment: str
) -> None:
    proposal_id = row.id
    with gw.db.begin() as conn:
        _claim(conn, proposal_id, Status.REJECTED, principal, comment)
        record(
            gw,
            conn,
            principal,
            decision,
            type="policy.rejected",
            action="reject",
            target=f"policy-proposal:{proposal_id}",
            details={
                "proposal": proposal_id,
                "kind": row.kind,
                "policy_version": decision.policy_version,
                "base_version": row.base_version,
                "proposed_by": row.proposed_by,
                "comment": comment,
            },
        )
