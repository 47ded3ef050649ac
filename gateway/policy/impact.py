"""What a policy decides for a template, and which decisions a proposed change turns around.

A template decision is the one a job submission makes (`jobs.submit`): `submit` on `job`, the
template version approved, then `query:<kind>` on each dataset's data object, whose share class
and classification come from the catalogue, with the purpose attribute of the job. The first
step that fails decides and explains; an allow lists the rule of every step.

The impact of a proposal compares the decisions of the base version and of the proposed one
for every department × template × action (and role) a changed rule can touch: departments the
policy, the catalogue, the templates or the jobs name (`*` stands for any other department);
the latest version of every template; the named objects of the changed rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa

from gateway.errors import NotFound
from gateway.store import schema
from policies import Decision, PolicyEngine, ReasonCode, Request, Rule, data_object

#: Stands for "any department no rule, dataset, template or job names" in impact reports.
OTHER_DEPARTMENT: Final = "any_other_department"
PURPOSES: Final = ("none", "stated", "approved")
MAX_IMPACT_ENTRIES: Final = 500
MAX_IMPACT_DECISIONS: Final = 200_000


@dataclass(frozen=True, slots=True)
class DatasetAttrs:
    id: str
    share_class: str
    classification: str

    @property
    def obj(self) -> str:
        return data_object(self.share_class, self.classification, self.id)


@dataclass(frozen=True, slots=True)
class TemplateFacts:
    id: str
    version: int
    kind: str
    status: str
    datasets: tuple[str, ...]

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"


def catalogue_attrs(conn: sa.Connection) -> dict[str, DatasetAttrs]:
    d = schema.datasets
    rows = conn.execute(sa.select(d.c.id, d.c.share_class, d.c.classification)).all()
    return {r.id: DatasetAttrs(r.id, r.share_class, r.classification) for r in rows}


def template_facts(conn: sa.Connection, template_id: str, version: int | None) -> TemplateFacts:
    t = schema.templates
    query = sa.select(t.c.id, t.c.version, t.c.kind, t.c.status, t.c.spec).where(
        t.c.id == template_id
    )
    if version is not None:
        query = query.where(t.c.version == version)
    else:  # as `templates.load` (a job): the newest approved version, else the newest
        query = query.order_by(sa.case((t.c.status == "approved", 0), else_=1))
    row = conn.execute(query.order_by(t.c.version.desc()).limit(1)).first()
    if row is None:
        raise NotFound("the template or version does not exist")
    return _facts(row)


def _facts(row: Any) -> TemplateFacts:
    datasets = row.spec.get("datasets", []) if isinstance(row.spec, dict) else []
    return TemplateFacts(
        row.id, int(row.version), row.kind, row.status, tuple(str(d) for d in datasets)
    )


def latest_templates(conn: sa.Connection) -> list[TemplateFacts]:
    t = schema.templates
    newest = (
        sa.select(t.c.id, sa.func.max(t.c.version).label("version")).group_by(t.c.id).subquery()
    )
    rows = conn.execute(
        sa.select(t.c.id, t.c.version, t.c.kind, t.c.status, t.c.spec)
        .join(newest, sa.and_(t.c.id == newest.c.id, t.c.version == newest.c.version))
        .order_by(t.c.id)
    ).all()
    return [_facts(r) for r in rows]


def _step(decision: Decision, obj: str, action: str) -> dict[str, Any]:
    return {
        "object": obj,
        "action": action,
        "allowed": decision.allowed,
        "rule": decision.rule,
        "reason_code": str(decision.reason_code),
        "dataset": decision.dataset,
    }


def template_decision(
    engine: PolicyEngine,
    roles: Sequence[str],
    department: str,
    template: TemplateFacts,
    *,
    catalogue: dict[str, DatasetAttrs],
    purpose: str,
) -> dict[str, Any]:
    """The decision a job submission of `template` would get, explained."""
    steps: list[dict[str, Any]] = []
    base = {"policy_version": engine.version, "template": template.ref, "steps": steps}

    def denied(reason: str, code: str, rule: str | None, dataset: str | None) -> dict[str, Any]:
        return {
            **base,
            "allowed": False,
            "rule": rule,
            "reason": reason,
            "reason_code": code,
            "dataset": dataset,
        }

    submit = engine.decide(Request(tuple(roles), department, "job", "submit"))
    steps.append(_step(submit, "job", "submit"))
    if not submit.allowed:
        return denied(submit.reason, str(submit.reason_code), None, None)
    if template.status != "approved":
        reason = f"template {template.ref} is not approved (it is {template.status})"
        return denied(reason, ReasonCode.MISSING_APPROVAL.value, None, None)
    last = submit
    for dataset_id in template.datasets:
        attrs = catalogue.get(dataset_id)
        if attrs is None:
            return denied(f"dataset {dataset_id} is not in the catalogue", "workflow", None, None)
        action = f"query:{template.kind}"
        last = engine.decide(Request(tuple(roles), department, attrs.obj, action, purpose))
        steps.append(_step(last, attrs.obj, action))
        if not last.allowed:
            reason = (
                f"dataset {attrs.id} ({attrs.share_class} share, {attrs.classification}) may "
                f"not be queried by {template.kind} templates: {last.reason}"
            )
            return denied(reason, str(last.reason_code), None, attrs.id)
        if attrs.share_class == "conditional" and purpose == "none":  # as `jobs.submit`
            reason = f"dataset {attrs.id} is shared on condition: the job needs a stated purpose"
            return denied(reason, ReasonCode.MISSING_PURPOSE.value, None, attrs.id)
    return {
        **base,
        "allowed": True,
        "rule": last.rule,
        "reason": f"every step of a {template.kind} job on {template.ref} is granted",
        "reason_code": ReasonCode.GRANTED.value,
        "dataset": last.dataset,
    }


def known_departments(conn: sa.Connection, rules: Iterable[Rule]) -> list[str]:
    names = {r.department for r in rules if r.department != "*"}
    for column in (
        schema.datasets.c.provider,
        schema.templates.c.author_department,
        schema.jobs.c.department,
    ):
        names.update(str(v) for v in conn.execute(sa.select(column).distinct()).scalars())
    return sorted(names)


def _matches(obj: str, pattern: str) -> bool:
    return obj == pattern or (pattern.endswith("*") and obj.startswith(pattern[:-1]))


def impact(
    conn: sa.Connection,
    before: PolicyEngine,
    after: PolicyEngine,
    changed: Sequence[Rule],
) -> dict[str, Any]:
    """The decisions that differ between `before` and `after`, limited to what `changed` (the
    added and removed rules) can touch."""
    departments = known_departments(conn, [*before.rules(), *after.rules()])
    departments.append(OTHER_DEPARTMENT)
    catalogue = catalogue_attrs(conn)
    templates = latest_templates(conn)
    changes: list[dict[str, Any]] = []
    compared = 0
    truncated = False

    def record(entry: dict[str, Any]) -> None:
        nonlocal truncated
        if len(changes) < MAX_IMPACT_ENTRIES:
            changes.append(entry)
        else:
            truncated = True

    def shown(department: str) -> str:
        return "*" if department == OTHER_DEPARTMENT else department

    def scope(rule: Rule) -> list[str]:
        return departments if rule.department == "*" else [rule.department]

    seen: set[tuple[str, str, str, str]] = set()
    for rule in changed:
        if rule.obj.startswith("data/"):
            continue
        for department in scope(rule):
            key = (rule.role, department, rule.obj, rule.action)
            if key in seen:
                continue
            seen.add(key)
            request = Request((rule.role,), department, rule.obj, rule.action)
            was, now = before.decide(request).allowed, after.decide(request).allowed
            compared += 1
            if was != now:
                record(
                    {
                        "department": shown(department),
                        "role": rule.role,
                        "template": None,
                        "object": rule.obj,
                        "action": rule.action,
                        "purposes": None,
                        "before": "allow" if was else "deny",
                        "after": "allow" if now else "deny",
                    }
                )
    for template in templates:
        objects = [catalogue[d].obj for d in template.datasets if d in catalogue]
        relevant = [
            rule
            for rule in changed
            if (rule.obj, rule.action) == ("job", "submit")
            or (
                rule.action == f"query:{template.kind}"
                and any(_matches(obj, rule.obj) for obj in objects)
            )
        ]
        cells = {(rule.role, d) for rule in relevant for d in scope(rule)}
        for role, department in sorted(cells):
            if compared >= MAX_IMPACT_DECISIONS:
                truncated = True
                break
            turned = []
            for purpose in PURPOSES:
                old, new = (
                    template_decision(
                        engine,
                        [role],
                        department,
                        template,
                        catalogue=catalogue,
                        purpose=purpose,
                    )["allowed"]
                    for engine in (before, after)
                )
                compared += 1
                if old != new:
                    turned.append((purpose, old, new))
            if turned:
                record(
                    {
                        "department": shown(department),
                        "role": role,
                        "template": template.ref,
                        "object": None,
                        "action": "submit",
                        "purposes": [p for p, _, _ in turned],
                        "before": "allow" if turned[0][1] else "deny",
                        "after": "allow" if turned[0][2] else "deny",
                    }
                )
    granted = sum(1 for c in changes if c["after"] == "allow")
    return {
        "summary": {
            "decisions_compared": compared,
            "changed": len(changes),
            "granted": granted,
            "revoked": len(changes) - granted,
            "truncated": truncated,
        },
        "changes": changes,
    }
