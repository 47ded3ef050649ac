"""`POST /v1/policies/check`: may this subject, with these roles in this department, do this?

The question names a template (the decision a job submission would get: the same
`gateway.jobs.admission.decide`, asked the same way), a catalogued dataset (its share class and
classification come from the catalogue) or a named object. The only attributes the question may
carry are the job's purpose field and purpose ids, whose state is derived exactly as for a job;
share class, classification and template kind are never taken from the question. A data
object may be named directly only for a dataset the catalogue does not hold (a what-if), or
with exactly the catalogue's attributes. Every check is audited as `policy.checked` with the
decision, its rule and the policy version.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from gateway.auth.principal import (
    Principal,
    canonical_department,
    canonical_roles,
    canonical_subject,
)
from gateway.authz import require
from gateway.catalogue import purposes as purposes_store
from gateway.catalogue import templates
from gateway.context import Gateway
from gateway.errors import InvalidInput, NotFound
from gateway.jobs import admission
from gateway.policy.impact import catalogue_attrs
from gateway.store import db
from policies import Decision, ReasonCode, Request, data_parts


def _step(step: admission.Step) -> dict[str, Any]:
    return {
        "object": step.object,
        "action": step.action,
        "allowed": step.allowed,
        "rule": step.rule,
        "reason_code": step.reason_code,
        "dataset": step.dataset,
    }


def explained(verdict: admission.Admission | admission.Refusal, template: str) -> dict[str, Any]:
    """A template decision as the check answers it."""
    base = {
        "policy_version": verdict.policy_version,
        "template": template,
        "steps": [_step(s) for s in verdict.steps],
    }
    if isinstance(verdict, admission.Refusal):
        return {
            **base,
            "allowed": False,
            "rule": verdict.rule,
            "reason": verdict.message,
            "reason_code": verdict.reason_code,
            "dataset": verdict.dataset,
        }
    last = verdict.steps[-1]
    return {
        **base,
        "allowed": True,
        "rule": last.rule,
        "reason": f"every step of a job on {template} is granted",
        "reason_code": ReasonCode.GRANTED.value,
        "dataset": last.dataset,
        "purposes": verdict.purposes,
    }


def _single(decision: Decision, obj: str, action: str) -> dict[str, Any]:
    return {
        "allowed": decision.allowed,
        "rule": decision.rule,
        "reason": decision.reason,
        "reason_code": str(decision.reason_code),
        "dataset": decision.dataset,
        "policy_version": decision.policy_version,
        "steps": [
            {
                "object": obj,
                "action": action,
                "allowed": decision.allowed,
                "rule": decision.rule,
                "reason_code": str(decision.reason_code),
                "dataset": decision.dataset,
            }
        ],
    }


def check(
    gw: Gateway,
    principal: Principal,
    *,
    roles: list[str],
    department: str,
    subject: str | None,
    obj: str | None,
    dataset: str | None,
    template: str | None,
    version: int | None,
    action: str | None,
    purpose: str | None,
    purposes: Sequence[str] = (),
) -> dict[str, Any]:
    granted = require(gw, principal, "policy", "read", event="policy.denied", target="policy")
    # The names a token would carry, in the form a token's are decided in (``ＭＡＲＫＥＴ`` is
    # ``market``); the subject goes into the audit log, so it must be a subject's characters.
    roles = list(canonical_roles(roles))
    department = canonical_department(department)
    subject = None if subject is None else canonical_subject(subject)
    if sum(x is not None for x in (obj, dataset, template)) != 1:
        raise InvalidInput("name exactly one of: template, dataset, object")
    engine = gw.policy.current()
    ids, description = admission.named_purposes(purpose or "", purposes)
    state = "stated" if description else "none"
    now = datetime.now(UTC)
    if template is not None:
        if action not in (None, "submit"):
            raise InvalidInput("the action on a template is 'submit' (run a job)")
        with db.reading(gw.db) as conn:  # exactly what a submission asks (`jobs.submit`)
            stored = templates.load(conn, template, version)
            question = admission.ask(
                conn,
                roles=roles,
                department=department,
                stored=stored,
                datasets=templates.datasets_of(conn, stored.spec),
                purpose_ids=ids,
                described=bool(description),
                now=now,
            )
        result = explained(admission.decide(engine, question), stored.ref)
        target = f"template:{stored.ref}"
        action = "submit"
    else:
        if action is None:
            raise InvalidInput("action is required with a dataset or an object")
        with db.reading(gw.db) as conn:
            catalogue = catalogue_attrs(conn)
            named, _ = purposes_store.named(conn, ids)
        if dataset is not None:
            attrs = catalogue.get(dataset)
            if attrs is None:
                raise NotFound("no such dataset")
            obj = attrs.obj
        if obj is None:
            raise InvalidInput("name exactly one of: template, dataset, object")
        parts = data_parts(obj)
        if parts is not None and parts[2] in catalogue and catalogue[parts[2]].obj != obj:
            raise InvalidInput(
                "a catalogued dataset's share class and classification come from the "
                "catalogue, not from the request: name it with 'dataset'"
            )
        if parts is not None:
            state, _ = admission.purpose_state(
                named,
                department=department,
                dataset=parts[2],
                now=now,
                described=bool(description) or bool(ids),
            )
        request = Request(tuple(roles), department, obj, action, state if parts else "none")
        result = _single(engine.decide(request), obj, action)
        target = obj
    result["subject"] = subject
    with gw.db.begin() as conn:
        gw.audit.record(
            conn,
            type="policy.checked",
            principal=principal,
            action="check",
            target=target,
            allowed=bool(result["allowed"]),
            rule=result["rule"],
            reason=result["reason"],
            details={
                "policy_version": result["policy_version"],
                "checked": {
                    "subject": subject,
                    "roles": list(roles),
                    "department": department,
                    "action": action,
                    "purpose": state,
                    "purpose_ids": list(ids),
                },
                "reason_code": result["reason_code"],
                "dataset": result["dataset"],
                "steps": result["steps"],
                "check_granted_by": granted.rule,
            },
        )
    return result
