"""One path for every authorization decision: decide, audit a denial, raise.

A denial is committed to the audit log in its own transaction before the error is raised, so a
refused request leaves its trace even though the request itself changes nothing. The 403 it
becomes carries the explanation: `rule`, `reason`, `reason_code`, `dataset`, `policy_version`
(the codes are `policies.ReasonCode` values, or `workflow` for a gateway rule such as "the
author never approves"). The attributes of a request (share class, classification, template
kind, purpose state) are set by the caller from the gateway's own records, never from input;
whether a job may run is `gateway.jobs.admission.decide`, built on the same policy engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from gateway.auth.principal import Principal
from gateway.context import Gateway
from gateway.errors import Forbidden
from policies import Decision, ReasonCode, Request

#: The reason code of a denial decided by the gateway's workflow rather than by Casbin.
WORKFLOW: Final = "workflow"


def decide(
    gw: Gateway, principal: Principal, obj: str, action: str, *, purpose: str = "none"
) -> Decision:
    request = Request(
        roles=principal.roles,
        department=principal.department,
        obj=obj,
        action=action,
        purpose=purpose,
    )
    return gw.policy.current().decide(request)


def deny(
    gw: Gateway,
    principal: Principal,
    *,
    event: str,
    action: str,
    target: str,
    reason: str,
    rule: str | None = None,
    policy_version: int | None = None,
    details: Mapping[str, Any] | None = None,
    reason_code: str | None = None,
    dataset: str | None = None,
) -> Forbidden:
    """Audit a denial and return the error to raise."""
    if dataset is None and details and isinstance(details.get("dataset"), str):
        dataset = details["dataset"]
    code = str(reason_code) if reason_code is not None else WORKFLOW
    if policy_version is None:
        policy_version = gw.policy.current().version
    with gw.db.begin() as conn:
        gw.audit.record(
            conn,
            type=event,
            principal=principal,
            action=action,
            target=target,
            allowed=False,
            rule=rule,
            reason=reason,
            details={
                **(details or {}),
                "policy_version": policy_version,
                "reason_code": code,
                **({"dataset": dataset} if dataset is not None else {}),
            },
        )
    extensions: dict[str, Any] = {
        "rule": rule,
        "reason": reason,
        "reason_code": code,
        "dataset": dataset,
        "policy_version": policy_version,
    }
    if details and "template" in details:
        extensions["template"] = details["template"]
    return Forbidden(reason, **extensions)


def deny_decision(
    gw: Gateway,
    principal: Principal,
    decision: Decision,
    *,
    event: str,
    action: str,
    target: str,
    details: Mapping[str, Any] | None = None,
) -> Forbidden:
    """`deny` with everything the policy's decision says."""
    return deny(
        gw,
        principal,
        event=event,
        action=action,
        target=target,
        reason=decision.reason,
        rule=decision.rule,
        policy_version=decision.policy_version,
        details=details,
        reason_code=(decision.reason_code or ReasonCode.MISSING_ROLE).value,
        dataset=decision.dataset,
    )


def require(
    gw: Gateway,
    principal: Principal,
    obj: str,
    action: str,
    *,
    event: str,
    target: str,
    details: Mapping[str, Any] | None = None,
    read_event: str | None = None,
) -> Decision:
    """Decide; a denial is audited and raised. With `read_event`, an allowed read is audited
    too (durably, through the group committer, before anything is returned)."""
    decision = decide(gw, principal, obj, action)
    if not decision.allowed:
        raise deny_decision(
            gw, principal, decision, event=event, action=action, target=target, details=details
        )
    if read_event is not None:
        gw.audit.record_durable(
            type=read_event,
            principal=principal,
            action=action,
            target=target,
            allowed=True,
            rule=decision.rule,
            details={**(details or {}), "policy_version": decision.policy_version},
        )
    return decision
