"""Templates: proposed by analysts, approved by every provider dataset's owner.

    proposed ──(every provider's owner approves)──▶ approved ──(owner or author retires)──▶ retired
        └────(any provider's owner rejects)───────▶ rejected

Approval binds to the content hash; a change is a new version that starts at `proposed`.
The author can never approve, nor can anyone outside the provider department of a dataset.
A retired version answers 410 Gone to reads and jobs; it never runs again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from gateway.auth.principal import Principal, same_person
from gateway.authz import deny, require
from gateway.catalogue import cache as catalogue_cache
from gateway.catalogue import registry as catalogue
from gateway.catalogue.documents import DatasetSpec, TemplateKindName, TemplateSpec
from gateway.context import Gateway
from gateway.dp.plans import dp_compile
from gateway.errors import Conflict, Gone, InvalidInput, NotFound
from gateway.findings import spec as findings_spec
from gateway.store import db, schema
from policies import Decision
from sandbox import CompiledQuery, ParameterSpec, ParamType, TemplateKind, compile_template

RUNNABLE_KINDS = frozenset(
    {
        TemplateKindName.AGGREGATE,
        TemplateKindName.DP,
        TemplateKindName.VERIFY,
        TemplateKindName.LIST,
    }
)


class Status(StrEnum):
    PROPOSED = "proposed"
    APPROVED = "approved"
    REJECTED = "rejected"
    RETIRED = "retired"


@dataclass(frozen=True, slots=True)
class StoredTemplate:
    spec: TemplateSpec
    content_hash: str
    status: Status
    author: str
    author_department: str
    approvals: tuple[dict[str, Any], ...]

    @property
    def ref(self) -> str:
        return f"{self.spec.id}@{self.spec.version}"


def parameter_specs(spec: TemplateSpec) -> dict[str, ParameterSpec]:
    return {name: ParameterSpec.from_mapping(name, body) for name, body in spec.parameters.items()}


def verify_key_spec(spec: TemplateSpec) -> ParameterSpec | None:
    """The domain of a verify template's keys (each key is validated against it)."""
    if spec.verify is None:
        return None
    key = spec.verify.key
    if key.type == "integer":
        return ParameterSpec(key.name, ParamType.INTEGER)
    return ParameterSpec(key.name, ParamType.STRING, pattern=key.pattern, max_length=key.max_length)


def compile_spec(
    spec: TemplateSpec, datasets: dict[str, DatasetSpec], *, verify_slots: int = 1
) -> CompiledQuery:
    if spec.kind is TemplateKindName.DP:
        return dp_compile(spec, datasets)
    if spec.sql is None:
        raise InvalidInput("the template has no sql")
    return compile_template(
        spec.sql,
        kind=TemplateKind(spec.kind.value),
        tables={ds_id: catalogue.table_schema(ds) for ds_id, ds in datasets.items()},
        parameters=parameter_specs(spec),
        count_column=spec.output.count_column,
        verify_key=verify_key_spec(spec),
        verify_answer=spec.verify.answer if spec.verify is not None else "match",
        verify_slots=verify_slots,
    )


def datasets_of(conn: sa.Connection, spec: TemplateSpec) -> dict[str, DatasetSpec]:
    return {ds_id: catalogue.get(conn, ds_id) for ds_id in spec.datasets}


def cached_load(
    gw: Gateway, conn: sa.Connection, seen: int, template_id: str, version: int | None = None
) -> StoredTemplate:
    """`load`, from memory while the catalogue is at version `seen` (`gw.catalogue.current`)."""
    return gw.catalogue.get(
        seen, ("template", template_id, version), lambda: load(conn, template_id, version)
    )


def cached_datasets(
    gw: Gateway, conn: sa.Connection, seen: int, spec: TemplateSpec
) -> dict[str, DatasetSpec]:
    """`datasets_of`, from memory while the catalogue is at version `seen`."""
    key = ("datasets", tuple(spec.datasets))
    return dict(gw.catalogue.get(seen, key, lambda: datasets_of(conn, spec)))


def propose(gw: Gateway, principal: Principal, spec: TemplateSpec) -> StoredTemplate:
    target = f"template:{spec.id}@{spec.version}"
    decision = require(gw, principal, "template", "propose", event="template.denied", target=target)
    if spec.kind not in RUNNABLE_KINDS:
        # A dp template needs OpenDP noise and the ledger, a verify or list template its own
        # output rules: until those exist, accepting one would release exact rows.
        raise InvalidInput(f"templates of kind {spec.kind.value!r} are not available yet")
    content_hash = spec.content_hash()
    with gw.db.connect() as conn:
        datasets = datasets_of(conn, spec)
    compiled = compile_spec(spec, datasets)  # static checks; raises TemplateRejected
    if spec.findings is not None:
        wrong = findings_spec.problems(spec.findings, spec.datasets, compiled.output_columns)
        if wrong:
            raise InvalidInput(wrong[0])
    with gw.db.begin() as conn:
        catalogue_cache.bump(conn)  # every replica's copy is stale from this commit on
        existing = conn.execute(
            sa.select(schema.templates.c.content_hash).where(
                schema.templates.c.id == spec.id, schema.templates.c.version == spec.version
            )
        ).first()
        if existing is not None:
            raise Conflict(
                f"template {spec.id} version {spec.version} exists; propose a new version"
            )
        conn.execute(
            schema.templates.insert().values(
                id=spec.id,
                version=spec.version,
                kind=spec.kind.value,
                content_hash=content_hash,
                spec=spec.model_dump(mode="json"),
                status=Status.PROPOSED.value,
                author=principal.subject,
                author_department=principal.department,
                created_at=datetime.now(UTC),
            )
        )
        gw.audit.record(
            conn,
            type="template.proposed",
            principal=principal,
            action="propose",
            target=target,
            allowed=True,
            rule=decision.rule,
            details={
                "template": spec.id,
                "version": spec.version,
                "content_hash": content_hash,
                "datasets": list(spec.datasets),
                "policy_version": decision.policy_version,
            },
        )
    return get(gw, spec.id, spec.version)


def decide_approval(
    gw: Gateway,
    principal: Principal,
    template_id: str,
    version: int,
    *,
    approve: bool,
    content_hash: str | None,
    comment: str,
) -> StoredTemplate:
    action = "approve"
    target = f"template:{template_id}@{version}"
    decision = require(gw, principal, "template", action, event="template.denied", target=target)
    current = get(gw, template_id, version)

    def refuse(reason: str) -> Exception:
        return deny(
            gw,
            principal,
            event="template.denied",
            action=action,
            target=target,
            reason=reason,
            policy_version=decision.policy_version,
            details={"template": template_id},
        )

    if same_person(current.author, principal.subject):
        raise refuse("the author of a template cannot approve or reject it")
    if content_hash is not None and content_hash != current.content_hash:
        raise Conflict("the template changed since it was reviewed (content hash differs)")
    if current.status is not Status.PROPOSED:
        raise Conflict(f"template {current.ref} is {current.status.value}, not proposed")
    with db.reading(gw.db) as conn:
        datasets = datasets_of(conn, current.spec)
    decided = {a["dataset_id"] for a in current.approvals}
    mine = [
        ds_id
        for ds_id, ds in datasets.items()
        if ds.provider == principal.department and ds_id not in decided
    ]
    if not mine:
        raise refuse(
            f"no dataset of this template awaits a decision from department {principal.department}"
        )
    try:
        return _record_decision(
            gw,
            principal,
            current=current,
            datasets=datasets,
            mine=mine,
            approve=approve,
            comment=comment,
            decision=decision,
        )
    except sa.exc.IntegrityError:  # the primary key refused a second decision on one dataset
        raise Conflict("another decision on this template was recorded meanwhile") from None


def _record_decision(
    gw: Gateway,
    principal: Principal,
    *,
    current: StoredTemplate,
    datasets: dict[str, DatasetSpec],
    mine: list[str],
    approve: bool,
    comment: str,
    decision: Decision,
) -> StoredTemplate:
    template_id, version = current.spec.id, current.spec.version
    a = schema.template_approvals
    now = datetime.now(UTC)
    with gw.db.begin() as conn:
        catalogue_cache.bump(conn)  # every replica's copy is stale from this commit on
        for ds_id in mine:
            conn.execute(
                a.insert().values(
                    template_id=template_id,
                    version=version,
                    dataset_id=ds_id,
                    content_hash=current.content_hash,
                    decision="approved" if approve else "rejected",
                    approver=principal.subject,
                    approver_department=principal.department,
                    comment=comment,
                    decided_at=now,
                )
            )
        decisions = dict(
            conn.execute(
                sa.select(a.c.dataset_id, a.c.decision).where(
                    a.c.template_id == template_id, a.c.version == version
                )
            ).all()
        )
        if "rejected" in decisions.values():
            status = Status.REJECTED
        elif set(decisions) == set(datasets):
            status = Status.APPROVED
        else:
            status = Status.PROPOSED
        conn.execute(
            schema.templates.update()
            .where(schema.templates.c.id == template_id, schema.templates.c.version == version)
            .values(status=status.value)
        )
        gw.audit.record(
            conn,
            type="template.approved" if approve else "template.rejected",
            principal=principal,
            action="approve",
            target=f"template:{current.ref}",
            allowed=True,
            rule=decision.rule,
            details={
                "template": template_id,
                "version": version,
                "content_hash": current.content_hash,
                "datasets": mine,
                "status": status.value,
                "policy_version": decision.policy_version,
            },
        )
    return get(gw, template_id, version)


def get(
    gw: Gateway, template_id: str, version: int | None = None, *, allow_retired: bool = False
) -> StoredTemplate:
    """One version (None: the newest approved, else the newest); a retired one is Gone."""
    with db.reading(gw.db) as conn:
        stored = cached_load(gw, conn, gw.catalogue.current(conn), template_id, version)
    if stored.status is Status.RETIRED and not allow_retired:
        raise Gone(f"template {stored.ref} was retired")
    return stored


def retire(
    gw: Gateway, principal: Principal, template_id: str, version: int, *, reason: str
) -> StoredTemplate:
    """The author or an owner of one of its datasets retires a version: it never runs again."""
    target = f"template:{template_id}@{version}"
    decision = require(gw, principal, "template", "read", event="template.denied", target=target)
    current = get(gw, template_id, version, allow_retired=True)
    if current.status is Status.RETIRED:
        raise Gone(f"template {current.ref} was retired")
    with db.reading(gw.db) as conn:
        datasets = datasets_of(conn, current.spec)
    owner = "data_owner" in principal.roles and any(
        d.provider == principal.department for d in datasets.values()
    )
    if not (owner or same_person(current.author, principal.subject)):
        raise deny(
            gw,
            principal,
            event="template.denied",
            action="retire",
            target=target,
            reason="only the author or a data owner of one of its datasets may retire a template",
            policy_version=decision.policy_version,
            details={"template": template_id},
        )
    now = datetime.now(UTC)
    with gw.db.begin() as conn:
        catalogue_cache.bump(conn)  # every replica's copy is stale from this commit on
        updated = conn.execute(
            schema.templates.update()
            .where(
                schema.templates.c.id == template_id,
                schema.templates.c.version == version,
                schema.templates.c.status != Status.RETIRED.value,
            )
            .values(status=Status.RETIRED.value)
        )
        if updated.rowcount != 1:
            raise Gone(f"template {current.ref} was retired")
        conn.execute(
            schema.template_retirements.insert().values(
                template_id=template_id,
                version=version,
                retired_by=principal.subject,
                reason=reason,
                retired_at=now,
            )
        )
        gw.audit.record(
            conn,
            type="template.retired",
            principal=principal,
            action="retire",
            target=target,
            allowed=True,
            rule=decision.rule,
            details={
                "template": template_id,
                "version": version,
                "content_hash": current.content_hash,
                "previous_status": current.status.value,
                "policy_version": decision.policy_version,
            },
        )
    return get(gw, template_id, version, allow_retired=True)


def load(conn: sa.Connection, template_id: str, version: int | None = None) -> StoredTemplate:
    t = schema.templates
    query = sa.select(t).where(t.c.id == template_id)
    if version is None:  # the newest approved version, else the newest (to say it is not approved)
        approved_first = sa.case((t.c.status == Status.APPROVED.value, 0), else_=1)
        query = query.order_by(approved_first, t.c.version.desc())
    else:
        query = query.where(t.c.version == version)
    row = conn.execute(query.limit(1)).first()
    if row is None:
        which = "no versions" if version is None else f"no version {version}"
        raise NotFound(f"template {template_id} has {which}")
    a = schema.template_approvals
    approvals = conn.execute(
        sa.select(
            a.c.dataset_id,
            a.c.decision,
            a.c.approver,
            a.c.approver_department,
            a.c.decided_at,
            a.c.comment,
        )
        .where(a.c.template_id == template_id, a.c.version == row.version)
        .order_by(a.c.dataset_id)
    ).mappings()
    return StoredTemplate(
        spec=TemplateSpec.model_validate(row.spec),
        content_hash=row.content_hash,
        status=Status(row.status),
        author=row.author,
        author_department=row.author_department,
        approvals=tuple({**dict(r), "decided_at": r["decided_at"].isoformat()} for r in approvals),
    )


def responsible_parties(
    conn: sa.Connection, template_id: str, version: int
) -> dict[str, list[str]]:
    """谁提供/谁管理 of a template version: its datasets, their provider departments, and the
    departments whose data owners approved it (the managers of access to that data)."""
    a = schema.template_approvals.c
    approvals = conn.execute(
        sa.select(a.dataset_id, a.approver_department).where(
            a.template_id == template_id, a.version == version, a.decision == "approved"
        )
    ).all()
    datasets = sorted({str(r.dataset_id) for r in approvals})
    return {
        "datasets": datasets,
        "providers": catalogue.providers(conn, datasets),
        "managers": sorted({str(r.approver_department) for r in approvals}),
    }


def parties_of(
    stored: StoredTemplate, datasets: dict[str, DatasetSpec]
) -> dict[str, list[str]] | None:
    """`responsible_parties` from a loaded version and its dataset documents (no query);
    None when an approved dataset's document is not among `datasets`."""
    approved = [a for a in stored.approvals if a["decision"] == "approved"]
    ids = sorted({str(a["dataset_id"]) for a in approved})
    if any(ds_id not in datasets for ds_id in ids):
        return None
    return {
        "datasets": ids,
        "providers": sorted({datasets[ds_id].provider for ds_id in ids}),
        "managers": sorted({str(a["approver_department"]) for a in approved}),
    }


@dataclass(frozen=True, slots=True)
class Newest:
    """The newest version of a template, as the policy impact view needs it."""

    id: str
    version: int
    kind: str
    status: str
    datasets: tuple[str, ...]


def newest_versions(conn: sa.Connection) -> list[Newest]:
    t = schema.templates
    newest = (
        sa.select(t.c.id, sa.func.max(t.c.version).label("version")).group_by(t.c.id).subquery()
    )
    rows = conn.execute(
        sa.select(t.c.id, t.c.version, t.c.kind, t.c.status, t.c.spec)
        .join(newest, sa.and_(t.c.id == newest.c.id, t.c.version == newest.c.version))
        .order_by(t.c.id)
    ).all()
    return [
        Newest(
            r.id,
            int(r.version),
            r.kind,
            r.status,
            tuple(str(d) for d in (r.spec.get("datasets", []) if isinstance(r.spec, dict) else [])),
        )
        for r in rows
    ]


def author_departments(conn: sa.Connection) -> list[str]:
    t = schema.templates
    return [str(d) for d in conn.execute(sa.select(t.c.author_department).distinct()).scalars()]


def kinds(conn: sa.Connection, refs: set[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """The kind of each (template id, version) given."""
    if not refs:
        return {}
    t = schema.templates
    rows = conn.execute(
        sa.select(t.c.id, t.c.version, t.c.kind).where(t.c.id.in_(sorted({i for i, _ in refs})))
    )
    return {(r.id, int(r.version)): str(r.kind) for r in rows if (r.id, int(r.version)) in refs}


def list_all(gw: Gateway) -> list[StoredTemplate]:
    t = schema.templates
    with gw.db.connect() as conn:
        keys = conn.execute(sa.select(t.c.id, t.c.version).order_by(t.c.id, t.c.version)).all()
        # (retired versions are listed with their status; reading one answers 410)
        return [load(conn, k.id, k.version) for k in keys]


def view(stored: StoredTemplate) -> dict[str, Any]:
    return {
        **stored.spec.model_dump(mode="json"),
        "content_hash": stored.content_hash,
        "status": stored.status.value,
        "author": stored.author,
        "author_department": stored.author_department,
        "approvals": list(stored.approvals),
    }


def resolve_parameter_specs(
    gw: Gateway, spec: TemplateSpec, datasets: dict[str, DatasetSpec]
) -> dict[str, ParameterSpec]:
    """Turn `values_from: dept.dataset.column` into the column's public values."""
    resolved = {}
    for name, pspec in parameter_specs(spec).items():
        if pspec.values_from is not None:
            ds_id, _, column = pspec.values_from.rpartition(".")
            ds = datasets.get(ds_id)
            col = next((c for c in ds.columns if c.name == column), None) if ds else None
            if ds is None or col is None or col.sensitivity != "public":
                raise InvalidInput(
                    f"parameter {name!r}: values_from must name a public column of a dataset "
                    "of the template"
                )
            values = gw.value_sets.get(catalogue.table_source(gw, ds), column)
            resolved[name] = pspec.resolved(values)
        else:
            resolved[name] = pspec
    return resolved
