"""Why a request was denied: the nearest the policy came to granting it.

For each role the engine asks how far the rules of that role and action reach towards the
request's object, from the outside in:

    missing_role     no rule gives the role this action in the caller's department (or `*`)
    share_class      rules give it on data, but not of the object's share class
    classification   ... of that share class, but not of the object's classification
    dataset          ... of that class, but only for other datasets
    purpose          rules name this object, but require a purpose the request does not have:
                     missing_purpose (none), missing_approval (stated, not approved),
                     expired_purpose (its approval has expired)

The deepest stage over the request's roles is reported. Every step is a set lookup, so an
explanation costs no more than a decision whatever the size of the policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from policies.decisions import ReasonCode, Request
from policies.errors import PolicyBug
from policies.rules import Rule
from policies.vocabulary import ANY_DEPARTMENT, ANY_PURPOSE, DATA_PREFIX, data_parts

_PURPOSE_CODES = {
    "none": ReasonCode.MISSING_PURPOSE,
    "stated": ReasonCode.MISSING_APPROVAL,
    "expired": ReasonCode.EXPIRED_PURPOSE,
}
_STAGES = (
    ReasonCode.MISSING_ROLE,
    ReasonCode.SHARE_CLASS,
    ReasonCode.CLASSIFICATION,
    ReasonCode.DATASET,
)


def _segments(obj: str) -> tuple[str, str]:
    """Share class and classification of a data rule object; `*` where the rule is wider."""
    parts = [*obj[len(DATA_PREFIX) :].split("/"), "*", "*"]
    return parts[0], parts[1]


@dataclass(frozen=True, slots=True)
class Scopes:
    """What each (role, action, department) reaches: any object, share classes, classes."""

    keys: frozenset[tuple[str, ...]]

    @classmethod
    def of(cls, rules: Iterable[Rule]) -> Scopes:
        keys: set[tuple[str, ...]] = set()
        for rule in rules:
            base = (rule.role, rule.action, rule.department)
            keys.add(base)
            if rule.obj.startswith(DATA_PREFIX):
                share, classification = _segments(rule.obj)
                keys.add((*base, share))
                keys.add((*base, share, classification))
        return cls(frozenset(keys))

    def reach(self, role: str, request: Request) -> int:
        """How many of the stages missing_role, share_class, classification the role passes."""
        departments = (request.department, ANY_DEPARTMENT)
        if not any((role, request.action, d) in self.keys for d in departments):
            return 0
        parts = data_parts(request.obj)
        if parts is None:
            return 0  # a named object: the role has the action, on other objects only
        share, classification, _ = parts
        shares = (share, "*")
        if not any((role, request.action, d, s) in self.keys for d in departments for s in shares):
            return 1
        if not any(
            (role, request.action, d, s, c) in self.keys
            for d in departments
            for s in shares
            for c in (classification, "*")
        ):
            return 2
        return 3


def _needed(rules: Sequence[Rule]) -> str:
    """The weakest purpose the candidate rules ask for."""
    conditions = {rule.purpose for rule in rules}
    return "a stated" if "stated" in conditions else "an approved"


def denial(
    request: Request, scopes: Scopes, near: Mapping[str, Sequence[Rule]]
) -> tuple[ReasonCode, str]:
    """The reason code and text for a denied request; `near` holds each role's candidates
    (the rules that name the request's object but did not match)."""
    stage, role = -1, ""
    for candidate_role in request.roles:
        reached = 4 if near.get(candidate_role) else scopes.reach(candidate_role, request)
        if reached > stage:
            stage, role = reached, candidate_role
    base = f"no rule grants {request.describe()}"
    parts = data_parts(request.obj)
    if stage < 1 or parts is None:
        return ReasonCode.MISSING_ROLE, base
    share, classification, dataset = parts
    if stage < 4:
        detail = {
            1: f"role {role} may not {request.action} data of share class '{share}'",
            2: f"role {role} may not {request.action} {share} data classified '{classification}'",
            3: f"role {role} may {request.action} {share}/{classification} data of other "
            f"datasets only, not {dataset}",
        }[stage]
        return _STAGES[stage], f"{base}: {detail}"
    rules = [rule for rule in near[role] if rule.purpose != ANY_PURPOSE]
    code = _PURPOSE_CODES.get(request.purpose)
    if code is None or not rules:
        raise PolicyBug("a purpose-conditioned denial of a request whose purpose is approved")
    situation = {
        ReasonCode.MISSING_PURPOSE: "the job states no purpose",
        ReasonCode.MISSING_APPROVAL: "the job's purpose is not approved",
        ReasonCode.EXPIRED_PURPOSE: "the approval of the job's purpose has expired",
    }[code]
    return code, (
        f"dataset {dataset} ({share} share, {classification}) may be queried by role {role} "
        f"with {_needed(rules)} purpose only (rule '{rules[0].text()}'); {situation}"
    )
