"""One path for every authorization decision: decide, audit a denial, raise.

A denial is committed to the audit log in its own transaction before the error is raised, so a
refused request leaves its trace even though the request itself changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.auth.principal import Principal
from gateway.context import Gateway
from gateway.errors import Forbidden
from policies import Decision, Request


def decide(gw: Gateway, principal: Principal, obj: str, action: str) -> Decision:
    request = Request(
        roles=principal.roles, department=principal.department, obj=obj, action=action
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
) -> Forbidden:
    """Audit a denial and return the error to raise."""
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
            details={**(details or {}), "policy_version": policy_version},
        )
    extensions: dict[str, Any] = {"rule": rule, "policy_version": policy_version}
    if details:
        extensions.update({k: v for k, v in details.items() if k in {"dataset", "template"}})
    return Forbidden(reason, **extensions)


def require(
    gw: Gateway,
    principal: Principal,
    obj: str,
    action: str,
    *,
    event: str,
    target: str,
    details: Mapping[str, Any] | None = None,
) -> Decision:
    decision = decide(gw, principal, obj, action)
    if not decision.allowed:
        raise deny(
            gw,
            principal,
            event=event,
            action=action,
            target=target,
            reason=decision.reason,
            rule=decision.rule,
            policy_version=decision.policy_version,
            details=details,
        )
    return decision
