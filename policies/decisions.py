"""What the gateway asks (`Request`) and what the policy answers (`Decision`).

Roles and department come from the caller's verified token; the gateway builds the object from
trusted sources (the catalogue's share class and classification, never the caller's input).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from policies.errors import InvalidRequest, PolicyBug
from policies.vocabulary import (
    action_problem,
    name_problem,
    object_problem,
    purpose_state_problem,
)

MAX_ROLES = 64


class ReasonCode(StrEnum):
    """Why a decision came out as it did; sent over HTTP as `reason_code`.

    The engine produces the first group; the gateway adds the workflow codes it decides itself
    (a template that is not approved is `missing_approval` too).
    """

    GRANTED = "granted"
    MISSING_ROLE = "missing_role"  # no rule gives any of the roles this action (here)
    SHARE_CLASS = "share_class"  # the role may act on data, not of this share class
    CLASSIFICATION = "classification"  # ... of this share class, not of this classification
    DATASET = "dataset"  # ... rules name other datasets of this class
    MISSING_PURPOSE = "missing_purpose"  # a rule grants it, with a purpose; none was given
    MISSING_APPROVAL = "missing_approval"  # ... with an approved purpose (or template)
    EXPIRED_PURPOSE = "expired_purpose"  # ... the purpose's approval has expired
    EVALUATION_FAILED = "evaluation_failed"  # evaluation raised: denied (fail closed)


@dataclass(frozen=True, slots=True)
class Request:
    """May a holder of any of `roles` in `department` perform `action` on `obj`?

    `roles` may be empty (such a request is denied). Requests never contain wildcards.
    `purpose` is the state of the job's purpose (`none`, `stated`, `approved`, `expired`), set
    by the gateway from its own records.
    """

    roles: tuple[str, ...]
    department: str
    obj: str
    action: str
    purpose: str = "none"

    def __post_init__(self) -> None:
        roles: object = self.roles
        if not isinstance(roles, tuple | list):
            raise InvalidRequest(f"roles must be a tuple of role names, not {type(roles).__name__}")
        object.__setattr__(self, "roles", tuple(roles))
        if len(self.roles) > MAX_ROLES:
            raise InvalidRequest(f"at most {MAX_ROLES} roles are allowed, got {len(self.roles)}")
        problem = next(filter(None, (name_problem("role", role) for role in self.roles)), None)
        if problem is None and self.department == "*":
            problem = "department '*' is only for rules; a request names the caller's department"
        problem = (
            problem
            or name_problem("department", self.department)
            or object_problem(self.obj, wildcard=False)
            or action_problem(self.action)
            or purpose_state_problem(self.purpose)
        )
        if problem is not None:
            raise InvalidRequest(problem)

    def describe(self) -> str:
        """`role(s) a, b in department d the action 'x' on 'y'`, for reasons."""
        roles = ", ".join(self.roles) if self.roles else "(none)"
        return (
            f"role(s) {roles} in department {self.department} "
            f"the action {self.action!r} on {self.obj!r}"
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to a `Request`.

    `rule` is the policy line that granted an allowed request (`p, analyst, *, job, submit`) and
    `None` for a denial; `reason` explains either, without data values. `reason_code` says why
    in one word (`granted` for an allow), and `dataset` names the dataset of a data object.
    """

    allowed: bool
    rule: str | None
    reason: str
    policy_version: int
    reason_code: ReasonCode | None = None
    dataset: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.allowed, bool):
            raise PolicyBug("Decision.allowed must be a bool")
        code: object = self.reason_code
        if code is None:
            code = ReasonCode.GRANTED if self.allowed else ReasonCode.MISSING_ROLE
        object.__setattr__(self, "reason_code", ReasonCode(str(code)))
        if (self.reason_code is ReasonCode.GRANTED) != self.allowed:
            raise PolicyBug("reason_code 'granted' goes with an allow, and only with one")
        if self.allowed and not (isinstance(self.rule, str) and self.rule):
            raise PolicyBug("an allowed Decision must name the rule that granted it")
        if not self.allowed and self.rule is not None:
            raise PolicyBug("a denied Decision names no rule (the reason says what was missing)")
        if not (isinstance(self.reason, str) and self.reason):
            raise PolicyBug("a Decision must give a reason")
        if isinstance(self.policy_version, bool) or not isinstance(self.policy_version, int):
            raise PolicyBug("Decision.policy_version must be an int")
