"""Publishing a released result as an open dataset, refreshing it, unpublishing it.

A data owner of a department that provides data to the template publishes a released result
of an approved `aggregate` or `dp` template version, when every dataset it reads allows
opening (`open_class` `open`, or `conditional`: read with an API key only; `closed` refuses).
Each refresh is a new version; unpublishing stops serving every version and keeps them all.
Each publication is one transaction with its `open.published` audit entry, whose receipt is
stored with the version so anyone can check the served result against the public checkpoint.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.auth.principal import Principal
from gateway.authz import deny, require
from gateway.catalogue import templates
from gateway.catalogue.documents import TemplateKindName
from gateway.context import Gateway
from gateway.errors import Conflict, NotFound
from gateway.jobs import model as jobs
from gateway.jobs.model import Job, JobStatus, StoredResult
from gateway.jobs.reads import receipt
from gateway.opendata import model, render
from gateway.store import db

PUBLISHABLE_KINDS = frozenset({TemplateKindName.AGGREGATE, TemplateKindName.DP})


def _released(conn: Any, job_id: str) -> tuple[Job, StoredResult]:
    try:
        job = jobs.load_job(conn, job_id)
    except NotFound:
        job = None
    res = jobs.load_result(conn, job_id)
    if job is None or res is None or job.status != JobStatus.RELEASED.value:
        raise NotFound("no released result of that job")
    return job, res


def _refuse(gw: Gateway, principal: Principal, target: str, reason: str, **details: Any) -> Any:
    return deny(
        gw,
        principal,
        event="open.denied",
        action="publish",
        target=target,
        reason=reason,
        details=details,
    )


def publish(
    gw: Gateway,
    principal: Principal,
    open_id: str,
    *,
    job_id: str,
    about: dict[str, str] | None,
) -> dict[str, Any]:
    """Publish (``about`` holds title, description, licence, update_cycle) or, with ``about``
    None, refresh ``open_id`` with a new version from ``job_id``."""
    target = f"open:{open_id}"
    decision = require(gw, principal, "open", "publish", event="open.denied", target=target)
    with db.reading(gw.db) as conn:
        job, res = _released(conn, job_id)
        stored = templates.load(conn, job.template_id, job.version)
        datasets = templates.datasets_of(conn, stored.spec)
        existing = model.get_dataset(conn, open_id)
    if stored.spec.kind not in PUBLISHABLE_KINDS:
        raise _refuse(gw, principal, target, "only aggregate and dp results can be opened")
    if stored.status is not templates.Status.APPROVED:
        raise _refuse(gw, principal, target, "the template version is no longer approved")
    if principal.department not in {ds.provider for ds in datasets.values()}:
        raise _refuse(
            gw, principal, target, "only an owner of data the template reads may publish it"
        )
    closed = sorted(d for d, ds in datasets.items() if ds.open_class.value == "closed")
    if closed:
        raise _refuse(
            gw,
            principal,
            target,
            f"dataset {closed[0]} may not be opened (不予开放)",
            dataset=closed[0],
        )
    conditional = any(ds.open_class.value == "conditional" for ds in datasets.values())
    open_class = "conditional" if conditional else "open"
    if about is None and existing is None:
        raise NotFound(f"no open dataset {open_id}")
    if about is not None and existing is not None:
        raise Conflict(f"open dataset {open_id} exists; publish a new version instead")
    if existing is not None and (
        existing.provider != principal.department or existing.template_id != job.template_id
    ):
        raise _refuse(
            gw, principal, target, "a new version comes from the same template, by its publisher"
        )
    result = render.public_result(res.result)
    csv = render.csv_bytes(result)
    now = datetime.now(UTC)
    with gw.db.begin() as conn:
        if existing is None:
            assert about is not None
            version = 1
            model.insert_dataset(
                conn,
                id=open_id,
                provider=principal.department,
                open_class=open_class,
                template_id=job.template_id,
                status="published",
                latest_version=1,
                created_by=principal.subject,
                created_at=now,
                updated_at=now,
                **about,
            )
        else:
            version = int(existing.latest_version) + 1
            model.update_dataset(
                conn,
                open_id,
                latest_version=version,
                status="published",
                open_class=open_class,
                updated_at=now,
            )
        details = {
            "open_dataset": open_id,
            "version": version,
            "template": job.template_id,
            "template_version": job.version,
            "parameters": job.parameters,
            "open_class": open_class,
            "result_hash": render.result_hash(result),
            "csv_sha256": render.csv_hash(csv),
            "release": int(res.audit_index),
            "policy_version": decision.policy_version,
        }
        index = gw.audit.record(
            conn,
            type="open.published",
            principal=principal,
            action="publish",
            target=target,
            allowed=True,
            rule=decision.rule,
            details=details,
        )
        model.insert_version(
            conn,
            open_id=open_id,
            version=version,
            job_id=job_id,
            template_version=job.version,
            parameters=job.parameters,
            result=result,
            result_hash=details["result_hash"],
            csv_sha256=details["csv_sha256"],
            audit_index=index,
            receipt=None,
            published_by=principal.subject,
            published_at=now,
        )
    proof = receipt(gw, index)
    with gw.db.begin() as conn:
        model.set_receipt(conn, open_id, version, proof)
    return {
        "id": open_id,
        "version": version,
        "open_class": open_class,
        **details,
        "receipt": proof,
    }


def unpublish(gw: Gateway, principal: Principal, open_id: str, note: str) -> dict[str, Any]:
    target = f"open:{open_id}"
    decision = require(gw, principal, "open", "publish", event="open.denied", target=target)
    with gw.db.begin() as conn:
        row = model.get_dataset(conn, open_id)
        if row is None or row.provider != principal.department:
            raise NotFound(f"no open dataset {open_id}")
        if row.status != "published":
            raise Conflict(f"open dataset {open_id} is not published")
        model.update_dataset(conn, open_id, status="unpublished", updated_at=datetime.now(UTC))
        gw.audit.record(
            conn,
            type="open.unpublished",
            principal=principal,
            action="publish",
            target=target,
            allowed=True,
            rule=decision.rule,
            details={"open_dataset": open_id, "versions": int(row.latest_version), "note": note},
        )
    return {"id": open_id, "status": "unpublished", "versions": int(row.latest_version)}


def history(gw: Gateway, principal: Principal, open_id: str) -> dict[str, Any]:
    """The publisher's view: every version (also after unpublishing), with the job it came from."""
    require(gw, principal, "open", "read", event="open.denied", target=f"open:{open_id}")
    with db.reading(gw.db) as conn:
        row = model.get_dataset(conn, open_id)
        if row is None or row.provider != principal.department:
            raise NotFound(f"no open dataset {open_id}")
        versions = model.versions(conn, open_id)
    return {
        "id": open_id,
        "status": row.status,
        "title": row.title,
        "open_class": row.open_class,
        "template": row.template_id,
        "versions": versions,
    }
