"""What a policy decides for a template, and which decisions a proposed change turns around.

A template decision is the one a job submission makes: `gateway.jobs.admission.decide`, asked
with the catalogue's share class and classification of each dataset and a purpose in each state
a job can bring (none, a description only, an approved purpose in force).

The impact of a proposal compares the decisions of the base version and of the proposed one
for every department × template × action (and role) a changed rule can touch: departments the
policy, the catalogue, the templates or the jobs name (`*` stands for any other department);
the latest version of every template; the named objects of the changed rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from gateway.catalogue import registry, templates
from gateway.catalogue.purposes import PurposeFacts
from gateway.jobs import admission
from gateway.jobs import model as jobs
from gateway.store import db
from policies import PolicyEngine, Request, Rule, data_object

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


def catalogue_attrs(conn: db.Connection) -> dict[str, DatasetAttrs]:
    return {
        ds_id: DatasetAttrs(ds_id, share, classification)
        for ds_id, (share, classification) in registry.share_attributes(conn).items()
    }


def latest_templates(conn: db.Connection) -> list[TemplateFacts]:
    return [
        TemplateFacts(n.id, n.version, n.kind, n.status, n.datasets)
        for n in templates.newest_versions(conn)
    ]


def template_verdict(
    engine: PolicyEngine,
    roles: Sequence[str],
    department: str,
    template: TemplateFacts,
    *,
    catalogue: dict[str, DatasetAttrs],
    purpose: str,
    now: datetime,
) -> admission.Admission | admission.Refusal:
    """The admission decision a job of `template` would get with a purpose in state `purpose`:
    `none` (the job names none), `stated` (a description only) or `approved` (it names an
    approved purpose in force for each dataset)."""
    missing = next((d for d in template.datasets if d not in catalogue), None)
    if missing is not None:
        reason = f"dataset {missing} is not in the catalogue"
        return admission.Refusal("workflow", reason, engine.version)
    datasets = tuple(
        admission.DatasetFacts(a.id, a.share_class, a.classification)
        for a in (catalogue[d] for d in template.datasets)
    )
    approved = tuple(
        PurposeFacts(f"approved:{d.id}", d.id, department, "approved", now + timedelta(days=1))
        for d in datasets
    )
    question = admission.Question(
        roles=tuple(roles),
        department=department,
        template=template.ref,
        status=template.status,
        kind=template.kind,
        datasets=datasets,
        now=now,
        purposes=approved if purpose == "approved" else (),
        described=purpose == "stated",
    )
    return admission.decide(engine, question)


def known_departments(conn: db.Connection, rules: Iterable[Rule]) -> list[str]:
    names = {r.department for r in rules if r.department != "*"}
    names.update(registry.providers(conn))
    names.update(templates.author_departments(conn))
    names.update(jobs.departments(conn))
    return sorted(names)


def _matches(obj: str, pattern: str) -> bool:
    return obj == pattern or (pattern.endswith("*") and obj.startswith(pattern[:-1]))


def impact(
    conn: db.Connection,
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
    at = datetime.now(UTC)
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
                    isinstance(
                        template_verdict(
                            engine,
                            [role],
                            department,
                            template,
                            catalogue=catalogue,
                            purpose=purpose,
                            now=at,
                        ),
                        admission.Admission,
                    )
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
