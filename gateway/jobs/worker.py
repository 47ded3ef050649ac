"""The worker pool: claims accepted jobs, runs them in the sandbox, releases or fails them.

Claiming uses `FOR UPDATE SKIP LOCKED` on PostgreSQL (several replicas share one queue) and the
database write lock on SQLite. A release is one transaction: result row, job status and the
`job.released` audit entry; if the audit entry cannot be written nothing is released.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from audit import Actor
from gateway.authz import recheck_job
from gateway.catalogue import registry as catalogue
from gateway.catalogue import templates
from gateway.context import Gateway
from gateway.dp import ledger
from gateway.jobs.model import JobStatus
from gateway.jobs.releases import base as releases
from gateway.jobs.releases.base import Outcome
from gateway.jobs.releases.registry import RELEASES
from gateway.store import db, schema
from sandbox import CompiledQuery, SandboxError, validate_parameters

log = logging.getLogger("insitu.worker")
GRACE_S = 30.0


def claim_next(gw: Gateway, worker_id: str) -> sa.Row[Any] | None:
    j = schema.jobs
    if gw.db.dialect.name == "sqlite":
        # A cheap look before taking SQLite's write lock (PostgreSQL skips locked rows instead).
        with db.reading(gw.db) as conn:
            waiting = sa.select(j.c.id).where(j.c.status == JobStatus.ACCEPTED.value).limit(1)
            if conn.execute(waiting).first() is None:
                return None
    with gw.db.begin() as conn:
        query = (
            sa.select(j.c.id)
            .where(j.c.status == JobStatus.ACCEPTED.value)
            .order_by(j.c.created_at)
            .limit(1)
        )
        if gw.db.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        found = conn.execute(query).first()
        if found is None:
            return None
        conn.execute(
            j.update()
            .where(j.c.id == found.id)
            .values(status=JobStatus.RUNNING.value, started_at=datetime.now(UTC), worker=worker_id)
        )
        row = conn.execute(sa.select(j).where(j.c.id == found.id)).one()
        gw.audit.record(
            conn,
            type="job.started",
            principal=actor_of_job(row),
            action="run",
            target=f"job:{row.id}",
            allowed=True,
            details={"job": row.id, "worker": worker_id},
        )
        return row


def actor_of_job(row: sa.Row[Any]) -> Actor:
    """Who the job runs for: the submitter, as recorded when it was accepted."""
    return Actor(subject=row.subject, department=row.department, roles=tuple(row.roles))


def result_hash(result: dict[str, Any]) -> str:
    canonical = json.dumps(result, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


class Runner:
    """Runs one claimed job: common checks here, the kind's release in `gateway.jobs.releases.base`.

    Compiled templates are cached by content hash.
    """

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._compiled: dict[str, CompiledQuery] = {}
        self._lock = threading.Lock()

    def compiled(self, stored: templates.StoredTemplate, datasets: dict[str, Any]) -> CompiledQuery:
        with self._lock:
            hit = self._compiled.get(stored.content_hash)
        if hit is None:
            hit = templates.compile_spec(stored.spec, datasets)
            with self._lock:
                self._compiled[stored.content_hash] = hit
        return hit

    def execute(self, job: sa.Row[Any]) -> Outcome:
        gw = self.gw
        with db.reading(gw.db) as conn:
            stored = templates.load(conn, job.template_id, job.version)
            datasets = templates.datasets_of(conn, stored.spec)
        release = RELEASES.get(stored.spec.kind)
        if release is None or stored.spec.kind not in templates.RUNNABLE_KINDS:
            return Outcome(JobStatus.FAILED, None, "this template kind cannot be released yet")
        if (
            stored.content_hash != job.content_hash
            or stored.status is not templates.Status.APPROVED
        ):
            return Outcome(JobStatus.FAILED, None, "the template version is no longer approved")
        policy_version, denied = recheck_job(
            gw,
            actor_of_job(job),
            job_id=job.id,
            purpose=job.purpose,
            kind=stored.spec.kind.value,
            datasets=[
                (ds.id, ds.share_class.value, ds.classification.value) for ds in datasets.values()
            ],
        )
        if denied is not None:
            why = f"policy version {denied.policy_version} no longer allows this job"
            return Outcome(JobStatus.FAILED, None, f"{why}: {denied.reason}"[:300], policy_version)
        values = validate_parameters(
            templates.resolve_parameter_specs(gw, stored.spec, datasets), job.parameters
        )
        run = releases.Run(
            gw=gw,
            job=job,
            stored=stored,
            datasets=datasets,
            values=values,
            sources={ds_id: catalogue.table_source(gw, ds) for ds_id, ds in datasets.items()},
            compiled=lambda: self.compiled(stored, datasets),
        )
        return dataclasses.replace(release(run), policy_version=policy_version)

    def run(self, job: sa.Row[Any]) -> None:
        try:
            outcome = self.execute(job)
        except SandboxError as exc:
            outcome = Outcome(JobStatus.FAILED, None, str(exc)[:300])
        except Exception:  # a bug: keep the worker alive, fail the job, log server-side
            log.exception("job %s failed with an internal error", job.id)
            outcome = Outcome(JobStatus.FAILED, None, "internal error")
        try:
            finish(self.gw, job, outcome)
        except Exception:
            log.exception("job %s could not be finalised; releasing nothing", job.id)
            finish(
                self.gw, job, Outcome(JobStatus.FAILED, None, "the result could not be recorded")
            )
        self.gw.jobs_finished.notify()


def responsible_parties(conn: sa.Connection, job: sa.Row[Any]) -> dict[str, list[str]]:
    """谁提供/谁管理: the job's datasets, their provider departments, and the departments whose
    data owners approved this template version (the managers of access to that data)."""
    a, d = schema.template_approvals.c, schema.datasets.c
    approvals = conn.execute(
        sa.select(a.dataset_id, a.approver_department).where(
            a.template_id == job.template_id, a.version == job.version, a.decision == "approved"
        )
    ).all()
    datasets = sorted({str(r.dataset_id) for r in approvals})
    providers = conn.execute(sa.select(d.provider).where(d.id.in_(datasets))).scalars()
    return {
        "datasets": datasets,
        "providers": sorted({str(p) for p in providers}),
        "managers": sorted({str(r.approver_department) for r in approvals}),
    }


def finish(gw: Gateway, job: sa.Row[Any], outcome: Outcome) -> None:
    now = datetime.now(UTC)
    details: dict[str, Any] = {
        "job": job.id,
        "template": job.template_id,
        "version": job.version,
        "content_hash": job.content_hash,
    }
    with gw.db.begin() as conn:
        # Only the run that still holds the job may finish it: a worker outliving the stale
        # cutoff must not store a result after `recover_stale` failed the job and gave its
        # budget back (that result would be released uncharged). The conditional UPDATE also
        # serialises two finishers on PostgreSQL (row lock, WHERE re-checked).
        claimed = conn.execute(
            schema.jobs.update()
            .where(schema.jobs.c.id == job.id, schema.jobs.c.status == JobStatus.RUNNING.value)
            .values(status=outcome.status.value, finished_at=now, error=outcome.error)
        )
        if claimed.rowcount != 1:
            log.warning("job %s was already finished; its late outcome is dropped", job.id)
            return
        details.update(responsible_parties(conn, job))
        event = f"job.{outcome.status.value}"
        if outcome.result is not None:
            digest = result_hash(outcome.result)
            details.update(
                result=gw.audit.fingerprint(digest),
                result_hash=digest,
                rows=len(outcome.result["rows"]),
                withheld=len(outcome.result["withheld"]),
            )
        else:
            details["error"] = outcome.error
        # The DP ledger: commit the reservation with the release, give it back otherwise.
        details.update(ledger.settle(conn, job.id, released=outcome.result is not None))
        if outcome.policy_version is not None:
            details["policy_version"] = outcome.policy_version
        index = gw.audit.record(
            conn,
            type=event,
            principal=actor_of_job(job),
            action="run",
            target=f"job:{job.id}",
            allowed=True,
            details=details,
        )
        if outcome.result is not None:
            conn.execute(
                schema.job_results.insert().values(
                    job_id=job.id,
                    result=outcome.result,
                    result_hash=details["result_hash"],
                    audit_index=index,
                    created_at=now,
                )
            )
    gw.audit.nudge()  # sign a checkpoint covering the release soon, off the request path


def recover_stale(gw: Gateway) -> int:
    """Fail jobs whose worker died (running longer than the time limit plus grace)."""
    cutoff = datetime.now(UTC) - timedelta(seconds=gw.settings.job_timeout_s + GRACE_S)
    j = schema.jobs
    with gw.db.connect() as conn:
        stale = conn.execute(
            sa.select(j).where(j.c.status == JobStatus.RUNNING.value, j.c.started_at < cutoff)
        ).all()
    for job in stale:
        finish(gw, job, Outcome(JobStatus.FAILED, None, "the worker running the job was lost"))
    return len(stale)


class WorkerPool:
    def __init__(self, gw: Gateway, *, size: int, poll_s: float = 0.5) -> None:
        self.gw = gw
        self.runner = Runner(gw)
        self._size = size
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        recover_stale(self.gw)
        for n in range(self._size):
            name = f"insitu-worker-{n}-{uuid.uuid4().hex[:6]}"
            thread = threading.Thread(target=self._loop, args=(name,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self.gw.jobs_finished.notify()
        for thread in self._threads:
            thread.join(timeout=self.gw.settings.job_timeout_s + 5)
        self._threads.clear()

    def _loop(self, worker_id: str) -> None:
        while not self._stop.is_set():
            seen = self.gw.jobs_submitted.generation()
            try:
                job = claim_next(self.gw, worker_id)
            except Exception:
                log.exception("claiming a job failed; retrying")
                job = None
                self._stop.wait(self._poll_s)
            if job is not None:
                self.runner.run(job)
                continue
            self.gw.jobs_submitted.wait(seen, timeout=self._poll_s)
