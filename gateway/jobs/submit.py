"""Submission: every decision on the way, then the job row and its `job.accepted` entry.

Submission checks, in order: may the caller submit jobs at all; does the template version exist
and is it approved; may the caller's department query each dataset of the template under its
share class and classification (and is a purpose given where the share class needs one); are the
parameters valid. The job row and its `job.accepted` entry are written in one transaction.
A retired version is 410 Gone; 不予共享 data answers only verify and dp
(`templates.refuse_unshared`); conditional data needs an approved, unexpired purpose
(`purposes.require_purposes`); verify keys are validated, capped and reserved
(`gateway.jobs.verify_keys`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from gateway.auth.principal import Principal
from gateway.authz import decide, deny, require
from gateway.catalogue import purposes, templates
from gateway.catalogue.documents import ShareClass
from gateway.context import Gateway
from gateway.errors import BudgetExhausted, Gone, InvalidInput, NotFound
from gateway.jobs import verify_keys as verify_quota
from gateway.jobs.model import JobStatus
from gateway.store import schema
from policies import data_object
from sandbox import ParameterError, validate_parameters


def submit(  # noqa: PLR0915  (one use case: each check in order, each one call)
    gw: Gateway,
    principal: Principal,
    *,
    template_id: str,
    version: int | None,
    parameters: dict[str, Any],
    purpose: str,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    ref = f"{template_id}@{version if version is not None else 'latest'}"
    target = f"template:{ref}"
    decision = require(gw, principal, "job", "submit", event="job.denied", target=target)
    from gateway.dp import admission as dp_admission  # noqa: PLC0415  (it imports templates, as we do)

    request = dp_admission.request_hash(template_id, version, parameters, purpose)
    replayed = dp_admission.replay(gw, principal, idempotency_key, request)
    if replayed is not None:
        return replayed

    def refuse(
        reason: str,
        *,
        rule: str | None = None,
        version_: int | None = None,
        reason_code: str | None = None,
        **details: Any,
    ) -> Exception:
        return deny(
            gw,
            principal,
            event="job.denied",
            action="submit",
            target=target,
            reason=reason,
            rule=rule,
            policy_version=version_ or decision.policy_version,
            details={"template": template_id, **details},
            reason_code=reason_code,
        )

    try:
        stored = templates.get(gw, template_id, version)
    except NotFound:
        raise refuse("the template or version does not exist") from None
    except Gone as gone:
        refuse(gone.detail, reason_code="retired")  # audited as job.denied; answered 410
        raise
    target = f"template:{stored.ref}"
    if stored.status is not templates.Status.APPROVED:
        raise refuse(
            f"template {stored.ref} is not approved (it is {stored.status.value})",
            reason_code="missing_approval",
        )
    with gw.db.connect() as conn:
        datasets = templates.datasets_of(conn, stored.spec)
    kind = stored.spec.kind.value
    templates.refuse_unshared(stored.spec, datasets, refuse)
    grants: list[dict[str, Any]] = []  # every data decision, audited with the job
    for ds in datasets.values():
        obj = data_object(ds.share_class.value, ds.classification.value, ds.id)
        state = purposes.state_for(gw, principal, ds, purpose)
        d = decide(gw, principal, obj, f"query:{kind}", purpose=state)
        grants.append({"dataset": ds.id, "rule": d.rule, "policy_version": d.policy_version})
        if not d.allowed:
            raise refuse(
                f"dataset {ds.id} ({ds.share_class.value} share, {ds.classification.value}) "
                f"may not be queried by {kind} templates: {d.reason}",
                rule=d.rule,
                version_=d.policy_version,
                dataset=ds.id,
                reason_code=d.reason_code,
            )
        if ds.share_class is ShareClass.CONDITIONAL and not purpose.strip():
            raise refuse(
                f"dataset {ds.id} is shared on condition: the job needs a stated purpose",
                dataset=ds.id,
                reason_code="missing_purpose",
            )
    relied_on = purposes.require_purposes(gw, principal, datasets, refuse)
    parameters, keys = verify_quota.take_keys(
        gw, principal, target=target, spec=stored.spec, datasets=datasets, parameters=parameters
    )
    try:
        validate_parameters(
            templates.resolve_parameter_specs(gw, stored.spec, datasets), parameters
        )
    except ParameterError as exc:
        with gw.db.begin() as conn:
            gw.audit.record(
                conn,
                type="job.rejected",
                principal=principal,
                action="submit",
                target=target,
                allowed=False,
                reason="invalid parameters",
                details={"template": template_id, "parameters": gw.audit.fingerprint(parameters)},
            )
        raise InvalidInput(str(exc), parameter=exc.parameter) from None
    verify_quota.check_quota(gw, principal, datasets, keys, refuse)

    job_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    try:
        with verify_quota.refused_by(refuse), gw.db.begin() as conn:
            verify_quota.reserve_keys(conn, principal.department, datasets, keys)
            conn.execute(
                schema.jobs.insert().values(
                    id=job_id,
                    template_id=template_id,
                    version=stored.spec.version,
                    content_hash=stored.content_hash,
                    parameters=parameters,
                    purpose=purpose,
                    subject=principal.subject,
                    department=principal.department,
                    roles=list(principal.roles),
                    status=JobStatus.ACCEPTED.value,
                    created_at=now,
                )
            )
            privacy = dp_admission.admit(
                gw,
                conn,
                principal,
                stored=stored,
                datasets=datasets,
                job_id=job_id,
                key=idempotency_key,
                request=request,
            )
            index = gw.audit.record(
                conn,
                type="job.accepted",
                principal=principal,
                action="submit",
                target=f"job:{job_id}",
                allowed=True,
                rule=decision.rule,
                details={
                    "job": job_id,
                    "template": template_id,
                    "version": stored.spec.version,
                    "content_hash": stored.content_hash,
                    "datasets": sorted(datasets),
                    "providers": sorted({d.provider for d in datasets.values()}),
                    "parameters": gw.audit.fingerprint(parameters),
                    "purpose": gw.audit.fingerprint(purpose),
                    "purposes": relied_on,
                    **verify_quota.audit_details(keys),
                    "policy_version": decision.policy_version,
                    "grants": grants,
                    **privacy,
                },
            )
            conn.execute(
                schema.jobs.update().where(schema.jobs.c.id == job_id).values(audit_index=index)
            )
            verify_quota.store_keys(conn, job_id, keys)
    except BudgetExhausted as exc:  # rolled back: no job, nothing reserved
        dp_admission.audit_exhausted(gw, principal, target=target, template=template_id, exc=exc)
        raise
    except sa.exc.IntegrityError:  # the same Idempotency-Key, sent concurrently, won the race
        replayed = dp_admission.replay(gw, principal, idempotency_key, request)
        if replayed is None:
            raise
        return replayed
    gw.jobs_submitted.notify()
    return {"id": job_id, "status": JobStatus.ACCEPTED.value}
