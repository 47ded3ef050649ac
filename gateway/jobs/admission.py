"""The one admission decision: may this job run?

Every caller that asks — submission (`jobs.submit`), the worker's re-check before a queued job
runs (`jobs.worker`), the officer's check (`POST /v1/policies/check`, `insitu policy test`) and
the impact of a policy proposal (`policy.impact`) — gathers the same `Question` from the
gateway's records and calls `decide`. None of them adds a rule of its own, so they cannot
disagree.

The steps, in order; the first that refuses decides:

1. `job submit` under the policy — else the policy's code (`missing_role`);
2. the template version is approved — else `missing_approval` (`retired` for a retired one);
3. 不予共享 (share class `none`) answers only `verify` and `dp` — else `share_class`;
4. `query:<kind>` on each dataset under the policy, with the purpose state below — else the
   policy's code (`missing_purpose`, `missing_approval`, `expired_purpose`, `share_class`, …);
5. 有条件共享 (share class `conditional`): the job names an approved, unexpired purpose of its
   department for that dataset — else `missing_purpose` / `missing_approval` / `expired_purpose`,
   whatever the policy says (the owner's approval is the condition, not a policy option);
6. every purpose the job names is one of its department's for a dataset of the template — else
   `missing_approval`.

The purpose state of a dataset (the Casbin `purpose` attribute) comes from the purposes the job
names by id, never from free text: `approved` when one of them is the department's approved
purpose for that dataset and in force; `expired` when it was approved and has lapsed; `stated`
when the job names a purpose for it in any other state, or carries a description; else `none`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from gateway.catalogue import purposes as purpose_store
from gateway.catalogue.documents import DatasetSpec
from gateway.catalogue.purposes import PurposeFacts
from gateway.catalogue.templates import StoredTemplate
from gateway.store import db
from policies import Decision, PolicyEngine, ReasonCode, Request, data_object

#: Template kinds that may read 不予共享 data: a yes/no verification or a protected statistic.
KINDS_ON_UNSHARED: Final = frozenset({"verify", "dp"})
RETIRED: Final = "retired"


@dataclass(frozen=True, slots=True)
class DatasetFacts:
    """A dataset of the template, as the catalogue holds it."""

    id: str
    share_class: str
    classification: str

    @property
    def obj(self) -> str:
        return data_object(self.share_class, self.classification, self.id)


@dataclass(frozen=True, slots=True)
class Question:
    """Everything the decision depends on, read from the gateway's own records."""

    roles: tuple[str, ...]
    department: str
    template: str  # `id@version`
    status: str  # the version's status: approved | proposed | rejected | retired
    kind: str
    datasets: tuple[DatasetFacts, ...]
    now: datetime
    purposes: tuple[PurposeFacts, ...] = ()
    unknown_purposes: tuple[str, ...] = ()  # named ids the store does not hold
    described: bool = False  # the job carries a free-text description


@dataclass(frozen=True, slots=True)
class Step:
    object: str
    action: str
    allowed: bool
    rule: str | None
    reason_code: str
    dataset: str | None = None


@dataclass(frozen=True, slots=True)
class Admission:
    policy_version: int
    rule: str | None  # the rule that lets the caller submit jobs
    grants: tuple[tuple[str, str | None], ...]  # (dataset, granting rule)
    purposes: dict[str, str] = field(default_factory=dict)  # dataset -> purpose id relied on
    steps: tuple[Step, ...] = ()

    @property
    def reason(self) -> str:
        return "every step of the job is granted"


@dataclass(frozen=True, slots=True)
class Refusal:
    reason_code: str
    message: str
    policy_version: int
    rule: str | None = None
    dataset: str | None = None
    steps: tuple[Step, ...] = ()


def ask(
    conn: db.Connection,
    *,
    roles: Sequence[str],
    department: str,
    stored: StoredTemplate,
    datasets: Mapping[str, DatasetSpec],
    purpose_ids: Sequence[str],
    described: bool,
    now: datetime | None = None,
) -> Question:
    """The question for a job (or a check of one), from the gateway's records."""
    named, unknown = purpose_store.named(conn, purpose_ids)
    return Question(
        roles=tuple(roles),
        department=department,
        template=stored.ref,
        status=stored.status.value,
        kind=stored.spec.kind.value,
        datasets=tuple(
            DatasetFacts(d.id, d.share_class.value, d.classification.value)
            for d in datasets.values()
        ),
        now=now or datetime.now(UTC),
        purposes=tuple(named),
        unknown_purposes=tuple(unknown),
        described=described,
    )


def purpose_state(
    purposes: Sequence[PurposeFacts],
    *,
    department: str,
    dataset: str,
    now: datetime,
    described: bool,
) -> tuple[str, PurposeFacts | None]:
    """The purpose attribute for one dataset, and the purpose in force if there is one."""
    mine = [p for p in purposes if p.dataset == dataset and p.department == department]
    live = [p for p in mine if p.in_force(now)]
    if live:
        return "approved", max(live, key=lambda p: (p.expires_at or now, p.id))
    if any(p.status == "approved" for p in mine):
        return "expired", None
    if mine or described:
        return "stated", None
    return "none", None


def _step(decision: Decision, obj: str, action: str) -> Step:
    return Step(
        obj,
        action,
        decision.allowed,
        decision.rule,
        str(decision.reason_code),
        decision.dataset,
    )


def decide(policy: PolicyEngine, question: Question) -> Admission | Refusal:
    q = question
    steps: list[Step] = []

    def refuse(
        code: str, message: str, *, rule: str | None = None, dataset: str | None = None
    ) -> Refusal:
        return Refusal(code, message, policy.version, rule, dataset, tuple(steps))

    submit = policy.decide(Request(q.roles, q.department, "job", "submit"))
    steps.append(_step(submit, "job", "submit"))
    if not submit.allowed:
        return refuse(str(submit.reason_code), submit.reason, rule=submit.rule)
    if q.status != "approved":
        code = RETIRED if q.status == RETIRED else ReasonCode.MISSING_APPROVAL.value
        return refuse(code, f"template {q.template} is not approved (it is {q.status})")
    grants: list[tuple[str, str | None]] = []
    relied_on: dict[str, str] = {}
    for ds in q.datasets:
        if ds.share_class == "none" and q.kind not in KINDS_ON_UNSHARED:
            return refuse(
                ReasonCode.SHARE_CLASS.value,
                f"dataset {ds.id} has share class 'none' (不予共享): only verify and dp "
                f"templates may read it, not {q.kind}",
                dataset=ds.id,
            )
        state, purpose = purpose_state(
            q.purposes, department=q.department, dataset=ds.id, now=q.now, described=q.described
        )
        action = f"query:{q.kind}"
        decision = policy.decide(Request(q.roles, q.department, ds.obj, action, state))
        steps.append(_step(decision, ds.obj, action))
        if not decision.allowed:
            return refuse(
                str(decision.reason_code),
                f"dataset {ds.id} ({ds.share_class} share, {ds.classification}) may not be "
                f"queried by {q.kind} templates: {decision.reason}",
                rule=decision.rule,
                dataset=ds.id,
            )
        if ds.share_class == "conditional":
            if purpose is None:
                code, why = _unconditioned(q, ds.id, state)
                return refuse(
                    code.value,
                    f"dataset {ds.id} is shared on condition (有条件共享): the job needs the id "
                    f"of a purpose its owner approved for department {q.department}, and {why} "
                    "(request one: POST /v1/purposes)",
                    dataset=ds.id,
                )
            relied_on[ds.id] = purpose.id
        grants.append((ds.id, decision.rule))
    stray = _stray_purposes(q)
    if stray:
        return refuse(
            ReasonCode.MISSING_APPROVAL.value,
            f"purpose {stray} is not a purpose of department {q.department} for a dataset of "
            f"template {q.template}",
        )
    return Admission(policy.version, submit.rule, tuple(grants), relied_on, tuple(steps))


def _unconditioned(q: Question, dataset: str, state: str) -> tuple[ReasonCode, str]:
    """Why a conditional dataset has no purpose in force."""
    if state == "expired":
        return ReasonCode.EXPIRED_PURPOSE, "the approval of the purpose it names has expired"
    if state == "stated" and any(p.dataset == dataset for p in q.purposes):
        return ReasonCode.MISSING_APPROVAL, "the purpose it names is not approved"
    if state == "stated":
        why = "it names no purpose the owner approved for this dataset (a description is not one)"
        return ReasonCode.MISSING_APPROVAL, why
    return ReasonCode.MISSING_PURPOSE, "it names no purpose"


def _stray_purposes(q: Question) -> str | None:
    if q.unknown_purposes:
        return q.unknown_purposes[0]
    ids = {d.id for d in q.datasets}
    for p in q.purposes:
        if p.department != q.department or p.dataset not in ids:
            return p.id
    return None


def is_purpose_id(text: str) -> bool:
    """Purpose ids are UUIDs in their canonical form; anything else is a description."""
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def named_purposes(purpose: str, purposes: Sequence[str] = ()) -> tuple[tuple[str, ...], str]:
    """The purpose ids a request names and its free-text description.

    `purpose` (the job's one purpose field, the CLI's `--purpose`) is an id when it is one and a
    description otherwise; `purposes` holds further ids (one per conditional dataset).
    """
    text = purpose.strip()
    ids = [text, *purposes] if is_purpose_id(text) else list(purposes)
    description = "" if is_purpose_id(text) else text
    return tuple(dict.fromkeys(i.strip() for i in ids if i.strip())), description
