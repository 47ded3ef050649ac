"""Submission: the admission decision, then the job row and its `job.accepted` entry.

In order: may the caller submit jobs at all (before an `Idempotency-Key` replay); the one
admission decision (`gateway.jobs.admission.decide`: template approved, share class, policy per
dataset, the owner's approval of each conditional dataset's purpose); the parameters; the
verification keys against today's quota (`gateway.jobs.verify_keys`). A refusal is audited as
`job.denied` with its reason code, rule and dataset and answered 403 (410 for a retired
version). The job row, its reservations and its `job.accepted` entry are written in one
transaction. When one of this replica's workers is idle, no job waits in the queue and the
department is under its running cap, the same transaction claims the job for that worker
(`job.started`, the lease, the department's turn) and the job is handed to it once committed
(`gateway.jobs.idle`): no claim transaction, no worker woken to look for it.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from gateway import timing
from gateway.auth.principal import Principal
from gateway.authz import deny, require
from gateway.catalogue import cache as catalogue_cache
from gateway.catalogue import templates
from gateway.catalogue.documents import DatasetSpec
from gateway.context import Gateway
from gateway.dp import admission as dp_admission
from gateway.errors import (
    BudgetExhausted,
    Forbidden,
    Gone,
    InvalidInput,
    NotFound,
    TooManyRequests,
)
from gateway.jobs import admission, idempotency, model
from gateway.jobs import verify_keys as verify_quota
from gateway.jobs.idle import Slot
from gateway.jobs.model import Claimed, Job, JobStatus
from gateway.store import db
from sandbox import ParameterError, validate_parameters

log = logging.getLogger("insitu.submit")
QUEUE_FULL = "queue_full"  # the reason code of a submission refused by a queue bound
RETRY_AFTER_S = 5


class QueueFull(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_queue_bounds(
    gw: Gateway, conn: db.Connection, principal: Principal, *, turn_at: datetime | None = None
) -> tuple[model.Unfinished, int]:
    """Inside the job's transaction: the caller's and its department's unfinished jobs stay
    within the settings (a flood from one caller cannot fill the queue for everyone). Returns
    what it read of the queue, and the catalogue's version read by the same statement (a job
    handed to an idle worker is checked again under it, as a claim's under its own).
    `turn_at`: the submission holds an idle worker (`model.unfinished` may take the
    department's turn in the same statement)."""
    queue, row = model.unfinished(
        conn,
        subject=principal.subject,
        department=principal.department,
        also=catalogue_cache.version_columns(),
        turn_at=turn_at,
        running_cap=gw.settings.running_cap,
    )
    if queue.mine >= gw.settings.max_pending_per_caller:
        raise QueueFull(
            f"you have {queue.mine} unfinished jobs, the most allowed; wait for some to end"
        )
    if queue.department >= gw.settings.max_pending_per_department:
        raise QueueFull(
            f"your department has {queue.department} unfinished jobs, the most allowed; "
            "wait for some to end"
        )
    return queue, catalogue_cache.version_of(row)


def check_parameters(
    gw: Gateway,
    principal: Principal,
    stored: templates.StoredTemplate,
    datasets: dict[str, DatasetSpec],
    parameters: dict[str, Any],
    *,
    target: str,
) -> None:
    """Bad parameter values are audited as `job.rejected` (fingerprinted) and answered 422."""
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
                details={
                    "template": stored.spec.id,
                    "parameters": gw.audit.fingerprint(parameters),
                },
            )
        raise InvalidInput(str(exc), parameter=exc.parameter) from None


def refused(
    gw: Gateway, principal: Principal, refusal: admission.Refusal, *, target: str, template: str
) -> Forbidden | Gone:
    """Audit the refusal as `job.denied` and return the error to raise."""
    forbidden = deny(
        gw,
        principal,
        event="job.denied",
        action="submit",
        target=target,
        reason=refusal.message,
        rule=refusal.rule,
        policy_version=refusal.policy_version,
        details={"template": template},
        reason_code=refusal.reason_code,
        dataset=refusal.dataset,
    )
    if refusal.reason_code == admission.RETIRED:
        return Gone(refusal.message)
    return forbidden


def _written(
    gw: Gateway,
    conn: db.Connection,
    job: Job,
    principal: Principal,
    *,
    rule: str | None,
    details: dict[str, Any],
    worker: str | None,
    turn_taken: bool = False,
) -> Job:
    """Inside the job's transaction: its `job.accepted` entry and its row; with `worker`, the
    job claimed by that idle worker as a claim would record it (leased, the department's turn
    taken unless the queue's read took it: `turn_taken`, `job.started`). The entries first,
    so the row is written once with its index; nothing reads the row in between, and all of
    it commits or rolls back together."""
    target = f"job:{job.id}"
    entries: list[dict[str, Any]] = [
        {
            "type": "job.accepted",
            "principal": principal,
            "action": "submit",
            "target": target,
            "allowed": True,
            "rule": rule,
            "details": details,
        }
    ]
    if worker is not None:
        job = model.leased(
            job, worker_id=worker, now=job.created_at, lease_s=gw.settings.job_lease_s
        )
        if not turn_taken:
            model.take_turn(conn, job.department, job.created_at)
        entries.append(
            {
                "type": "job.started",
                "principal": principal,
                "action": "run",
                "target": target,
                "allowed": True,
                "details": {"job": job.id, "worker": worker},
            }
        )
    index = gw.audit.record_many(conn, entries)[0]
    job = dataclasses.replace(job, audit_index=index)
    model.insert(conn, job)
    return job


def _hand_over(gw: Gateway, slot: Slot | None, committed: Claimed | None) -> None:
    """After the job's transaction: hand a job claimed for an idle worker to it; otherwise let
    the worker held while deciding go back to the queue, and wake the workers for a job queued."""
    if slot is not None and committed is not None and committed.job.lease_owner == slot.worker_id:
        gw.handoffs.started(committed.job)  # before the caller can ask for its result
        if not gw.idle_workers.give(slot, committed):
            gw.handoffs.stopped(committed.job.id)
            log.warning(
                "job %s: its worker stopped waiting; it runs when its lease expires",
                committed.job.id,
            )
        return
    if slot is not None:
        gw.idle_workers.put_back(slot)  # refused, failed or queued: it looks at the queue
    if committed is not None:
        gw.idle_workers.wake()  # a job queued: the idle workers look


def _accept(
    gw: Gateway,
    principal: Principal,
    *,
    template_id: str,
    stored: templates.StoredTemplate,
    datasets: dict[str, DatasetSpec],
    parameters: dict[str, Any],
    purpose: str,
    purpose_ids: Sequence[str],
    keys: verify_quota.KeyRequest | None,
    rule: str | None,
    verdict: admission.Admission,
    target: str,
    idempotency_key: str | None,
    request: str,
) -> dict[str, Any]:
    """The job's transaction (queue bounds, reservations, entries, row), or its refusal."""
    job_id = str(uuid.uuid4())
    job = Job(
        id=job_id,
        template_id=template_id,
        version=stored.spec.version,
        content_hash=stored.content_hash,
        parameters=parameters,
        purpose=purpose,
        purpose_ids=tuple(purpose_ids),
        subject=principal.subject,
        department=principal.department,
        roles=tuple(principal.roles),
        status=JobStatus.ACCEPTED.value,
        created_at=datetime.now(UTC),
    )
    details: dict[str, Any] = {
        "job": job_id,
        "template": template_id,
        "version": stored.spec.version,
        "content_hash": stored.content_hash,
        "datasets": sorted(datasets),
        "providers": sorted({d.provider for d in datasets.values()}),
        "parameters": gw.audit.fingerprint(parameters),
        "purpose": gw.audit.fingerprint(purpose),
        "purposes": verdict.purposes,
        "purpose_ids": list(purpose_ids),
        **verify_quota.audit_details(keys),
        "policy_version": verdict.policy_version,
        "grants": [
            {"dataset": ds, "rule": granted, "policy_version": verdict.policy_version}
            for ds, granted in verdict.grants
        ],
    }
    slot = gw.idle_workers.take()  # an idle worker of this replica, held while deciding
    committed: Claimed | None = None
    try:
        verify_quota.check_quota(gw, principal, datasets, keys)
        with timing.stage("store:submit"), gw.db.begin() as conn:
            verify_quota.reserve_keys(conn, principal.department, datasets, keys)
            details.update(
                dp_admission.reserve_budget(
                    gw, conn, principal, stored=stored, datasets=datasets, job_id=job_id
                )
            )
            # After the reservations: the queue's read may take the department's turn, and
            # a release that claims (`worker.finish_and_claim`) locks its ledger rows, then
            # the turn, then the audit log. The same order here: no deadlock between them.
            # So a caller over a queue bound whose keys or budget are refused too gets that
            # refusal (its reservations roll back with the transaction either way).
            queue, catalogue_seen = check_queue_bounds(
                gw, conn, principal, turn_at=None if slot is None else job.created_at
            )
            worker = (
                slot.worker_id
                if slot is not None and queue.may_hand_over(gw.settings.running_cap)
                else None
            )
            job = _written(
                gw,
                conn,
                job,
                principal,
                rule=rule,
                details=details,
                worker=worker,
                turn_taken=queue.turn_taken,
            )
            idempotency.remember(
                conn, principal, key=idempotency_key, request=request, job_id=job_id
            )
            verify_quota.store_keys(conn, job_id, keys)
        committed = Claimed(job, catalogue_seen)
    except QueueFull as full:  # rolled back: no job, nothing reserved
        deny(
            gw,
            principal,
            event="job.denied",
            action="submit",
            target=target,
            reason=full.reason,
            policy_version=verdict.policy_version,
            details={"template": template_id},
            reason_code=QUEUE_FULL,
        )
        raise TooManyRequests(
            full.reason, reason_code=QUEUE_FULL, retry_after=RETRY_AFTER_S
        ) from None
    except verify_quota.QuotaRefused as quota:  # rolled back: no job, nothing reserved
        if quota.reason_code == verify_quota.SPREAD:
            verify_quota.report_spread(gw, principal, quota)
        raise deny(
            gw,
            principal,
            event="job.denied",
            action="submit",
            target=target,
            reason=quota.reason,
            policy_version=verdict.policy_version,
            details={"template": template_id},
            reason_code=quota.reason_code,
            dataset=quota.dataset,
        ) from None
    except BudgetExhausted as exc:  # rolled back: no job, nothing reserved
        dp_admission.audit_exhausted(gw, principal, target=target, template=template_id, exc=exc)
        raise
    except db.IntegrityError:  # the same Idempotency-Key, sent concurrently, won the race
        replayed = idempotency.replay(gw, principal, idempotency_key, request)
        if replayed is None:
            raise
        return replayed
    finally:
        _hand_over(gw, slot, committed)
    # The submission's outcome: accepted (a job handed to an idle worker may already run).
    return {"id": job_id, "status": JobStatus.ACCEPTED.value}


def submit(
    gw: Gateway,
    principal: Principal,
    *,
    template_id: str,
    version: int | None,
    parameters: dict[str, Any],
    purpose: str,
    purposes: Sequence[str] = (),
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    ref = f"{template_id}@{version if version is not None else 'latest'}"
    target = f"template:{ref}"
    decision = require(gw, principal, "job", "submit", event="job.denied", target=target)
    request = idempotency.request_hash(template_id, version, parameters, purpose, purposes)
    replayed = idempotency.replay(gw, principal, idempotency_key, request)
    if replayed is not None:
        return replayed

    purpose_ids, description = admission.named_purposes(purpose, purposes)
    with db.reading(gw.db) as conn:  # template and datasets from memory while unchanged
        seen = gw.catalogue.current(conn)
        try:
            stored = templates.cached_load(gw, conn, seen, template_id, version)
        except NotFound:
            raise deny(
                gw,
                principal,
                event="job.denied",
                action="submit",
                target=target,
                reason="the template or version does not exist",
                policy_version=decision.policy_version,
                details={"template": template_id},
            ) from None
        target = f"template:{stored.ref}"
        datasets = templates.cached_datasets(gw, conn, seen, stored.spec)
        question = admission.ask(
            conn,
            roles=principal.roles,
            department=principal.department,
            stored=stored,
            datasets=datasets,
            purpose_ids=purpose_ids,
            described=bool(description),
        )
    verdict = admission.decide(gw.policy.current(), question)
    if isinstance(verdict, admission.Refusal):
        raise refused(gw, principal, verdict, target=target, template=template_id)
    parameters, keys = verify_quota.take_keys(
        gw, principal, target=target, spec=stored.spec, datasets=datasets, parameters=parameters
    )
    check_parameters(gw, principal, stored, datasets, parameters, target=target)
    return _accept(
        gw,
        principal,
        template_id=template_id,
        stored=stored,
        datasets=datasets,
        parameters=parameters,
        purpose=purpose,
        purpose_ids=purpose_ids,
        keys=keys,
        rule=decision.rule,
        verdict=verdict,
        target=target,
        idempotency_key=idempotency_key,
        request=request,
    )
