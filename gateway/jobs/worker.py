"""The worker pool: claims accepted jobs, runs them in the sandbox, releases or fails them.

Claiming uses `FOR UPDATE SKIP LOCKED` on PostgreSQL (several replicas share one queue) and the
database write lock on SQLite. A release is one transaction: result row, job status and the
`job.released` audit entry; if the audit entry cannot be written nothing is released.

Leases and supervision (issue 14): a claim leases the job to the claiming worker for
`job_lease_s`; the pool's heartbeat renews the leases its workers hold. A running job whose
lease expired (its gateway was killed, or the store was away too long for the heartbeat) is
reclaimed by any replica's worker (`job.reclaimed`) and run again from scratch: it released
nothing, since a release commits the job's end state with it, and its DP reservation is still
held, to be committed or returned once by whichever run finishes it (`mark_finished` checks
the lease's holder). After `MAX_ATTEMPTS` claims it fails instead. A worker thread survives
any error (a store that cannot be written included): it backs off and carries on, and the
heartbeat restarts a thread that died anyway.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from audit import Actor
from gateway import timing
from gateway.catalogue import cache as catalogue_cache
from gateway.catalogue import registry as catalogue
from gateway.catalogue import templates
from gateway.catalogue.documents import TemplateKindName
from gateway.context import Gateway
from gateway.dp import ledger
from gateway.errors import InvalidInput
from gateway.findings import inbox
from gateway.jobs import admission, model, verify_keys
from gateway.jobs.model import Claimed, Job, JobStatus
from gateway.jobs.releases import base as releases
from gateway.jobs.releases.base import Outcome
from gateway.jobs.releases.registry import RELEASES
from gateway.quality import snapshots
from gateway.store import db
from sandbox import CompiledQuery, SandboxError, validate_parameters

log = logging.getLogger("insitu.worker")
MAX_ATTEMPTS = 3  # claims of one job (the first and two reclaims) before it fails
MAX_BACKOFF_S = 5.0
LOST = "the worker running the job was lost"


def claim_next(gw: Gateway, worker_id: str) -> Job | None:
    """A job for `worker_id`, leased to it: one whose lease expired first, else the next
    accepted one; None when there is none."""
    claimed = claim(gw, worker_id)
    return None if claimed is None else claimed.job


def claim(gw: Gateway, worker_id: str) -> Claimed | None:
    """`claim_next`, with the catalogue version the claim read."""
    now = datetime.now(UTC)
    if gw.db.dialect.name == "sqlite":
        # A cheap look before taking SQLite's write lock (PostgreSQL skips locked rows instead).
        with db.reading(gw.db) as conn:
            expired, waiting = model.any_expired(conn, now), model.any_waiting(conn)
        if not expired and not waiting:
            return None
    else:
        expired = True
    if expired:
        reclaimed = reclaim_expired(gw, worker_id, now)
        if reclaimed is not None:
            return Claimed(reclaimed)
    with gw.db.begin() as conn:
        claimed = _claim_in(gw, conn, worker_id, now)
        if claimed is None:
            return None
        gw.audit.record(conn, **_started(claimed.job, worker_id))
    return claimed


def _claim_in(gw: Gateway, conn: db.Connection, worker_id: str, now: datetime) -> Claimed | None:
    """Inside the caller's transaction: the next job for `worker_id` (`model.claim_fair`);
    the caller appends its `job.started` (`_started`)."""
    claimed = model.claim_fair(
        conn,
        worker_id=worker_id,
        now=now,
        running_cap=gw.settings.running_cap,
        lease_s=gw.settings.job_lease_s,
        also=catalogue_cache.version_columns(),
    )
    if claimed is None:
        return None
    job, row = claimed
    timing.RECORDER.since_time("queue", job.created_at)
    return Claimed(job, catalogue_cache.version_of(row))


def _started(job: Job, worker_id: str) -> dict[str, Any]:
    """The `job.started` entry of a claim (`AuditTrail.record`'s arguments)."""
    return {
        "type": "job.started",
        "principal": actor_of_job(job),
        "action": "run",
        "target": f"job:{job.id}",
        "allowed": True,
        "details": {"job": job.id, "worker": worker_id},
    }


def reclaim_expired(gw: Gateway, worker_id: str, now: datetime) -> Job | None:
    """Take over one running job whose lease expired, audited as `job.reclaimed`."""
    with gw.db.begin() as conn:
        taken = model.claim_expired(
            conn, worker_id=worker_id, now=now, lease_s=gw.settings.job_lease_s
        )
        if taken is None:
            return None
        before, job = taken
        gw.audit.record(
            conn,
            type="job.reclaimed",
            principal=actor_of_job(job),
            action="run",
            target=f"job:{job.id}",
            allowed=True,
            details={
                "job": job.id,
                "worker": worker_id,
                "previous_worker": before.lease_owner or before.worker,
                "attempt": job.attempts,
            },
        )
    log.warning("job %s: lease of %s expired; reclaimed", job.id, before.lease_owner)
    return job


def actor_of_job(job: Job) -> Actor:
    """Who the job runs for: the submitter, as recorded when it was accepted."""
    return Actor(subject=job.subject, department=job.department, roles=job.roles)


def result_hash(result: dict[str, Any]) -> str:
    canonical = json.dumps(result, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def refused_again(gw: Gateway, job: Job, refusal: admission.Refusal) -> None:
    """Audit the worker's refusal of a queued job as `job.denied` (the caller fails the job)."""
    with gw.db.begin() as conn:
        gw.audit.record(
            conn,
            type="job.denied",
            principal=actor_of_job(job),
            action="run",
            target=f"job:{job.id}",
            allowed=False,
            rule=refusal.rule,
            reason=refusal.message,
            details={
                "job": job.id,
                "policy_version": refusal.policy_version,
                "reason_code": refusal.reason_code,
                **({"dataset": refusal.dataset} if refusal.dataset else {}),
            },
        )


class Runner:
    """Runs one claimed job: common checks here, the kind's release in `gateway.jobs.releases.base`.

    Compiled templates are cached by content hash.
    """

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._compiled: dict[str, CompiledQuery] = {}
        self._kinds: dict[str, str] = {}  # content hash -> template kind (for metrics)
        self._lock = threading.Lock()

    def compiled(self, stored: templates.StoredTemplate, datasets: dict[str, Any]) -> CompiledQuery:
        with self._lock:
            hit = self._compiled.get(stored.content_hash)
        if hit is None:
            hit = templates.compile_spec(stored.spec, datasets)
            with self._lock:
                self._compiled[stored.content_hash] = hit
        return hit

    def execute(self, job: Job, catalogue_seen: int | None = None) -> Outcome:
        """Check `job` again and run it. `catalogue_seen`: the catalogue's version as the
        claim read it (`Claimed`), else it is read here. A claim's read comes after the job was
        accepted; a job handed over at its submission carries the read of its accepting
        transaction, after the admission decision. Either way a change committed before
        that read (a retirement) is seen; one committed between it and the job's commit is
        not, as if it had come just after."""
        gw = self.gw
        started = timing.start()
        ids, description = admission.named_purposes(job.purpose, job.purpose_ids)
        with db.reading(gw.db) as conn:  # no statement while all it needs is in memory
            if catalogue_seen is None:
                seen = gw.catalogue.current(conn)
            else:
                seen = gw.catalogue.observe(catalogue_seen)
            stored = templates.cached_load(gw, conn, seen, job.template_id, job.version)
            datasets = templates.cached_datasets(gw, conn, seen, stored.spec)
            self._kinds[job.content_hash] = stored.spec.kind.value
            question = admission.ask(
                conn,
                roles=job.roles,
                department=job.department,
                stored=stored,
                datasets=datasets,
                purpose_ids=ids,
                described=bool(description),
            )
        release = RELEASES.get(stored.spec.kind)
        if release is None or stored.spec.kind not in templates.RUNNABLE_KINDS:
            return Outcome(JobStatus.FAILED, None, "this template kind cannot be released yet")
        if (
            stored.content_hash != job.content_hash
            or stored.status is not templates.Status.APPROVED
        ):
            return Outcome(JobStatus.FAILED, None, "the template version is no longer approved")
        # Decided again under the live policy: a revocation approved since the job was accepted,
        # or a purpose approval that has lapsed, stops it too.
        verdict = admission.decide(gw.policy.current(), question)
        if isinstance(verdict, admission.Refusal):
            refused_again(gw, job, verdict)
            why = f"policy version {verdict.policy_version} no longer allows this job"
            return Outcome(
                JobStatus.FAILED, None, f"{why}: {verdict.message}"[:300], verdict.policy_version
            )
        policy_version = verdict.policy_version
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
        # The profile each dataset's current file has (a changed file is profiled now); data
        # failing a `must` quality rule is not run on. The release names the profiles.
        try:
            named = snapshots.profiles_for_job(gw, datasets, run.sources, seen=seen)
        except InvalidInput as exc:
            return Outcome(JobStatus.FAILED, None, exc.detail[:300], policy_version)
        timing.done("admission", started)
        parties = templates.parties_of(stored, datasets)
        outcome = release(run)
        result = None if outcome.result is None else {**outcome.result, "profiles": named}
        return dataclasses.replace(
            outcome,
            result=result,
            policy_version=policy_version,
            parties=parties,
            reserved=stored.spec.kind is TemplateKindName.DP,  # as `dp_admission.reserve_budget`
        )

    def run(
        self, job: Job, catalogue_seen: int | None = None, next_for: str | None = None
    ) -> Claimed | None:
        """Run `job` and record its end (`catalogue_seen`: as `execute`); with `next_for`, claim
        the next job for that worker in the same transaction and return it
        (`finish_and_claim`). If even a failure cannot be recorded (the store is away) the
        error propagates: the job keeps its lease until it expires, then runs again."""
        started = time.monotonic()
        claimed: Claimed | None = None
        self.gw.handoffs.started(job)
        if job.attempts > MAX_ATTEMPTS:
            outcome = Outcome(JobStatus.FAILED, None, f"{LOST} {MAX_ATTEMPTS} times")
        else:
            try:
                outcome = self.execute(job, catalogue_seen)
            except SandboxError as exc:
                outcome = Outcome(JobStatus.FAILED, None, str(exc)[:300])
            except Exception:  # a bug or the store: keep the worker alive, fail the job
                log.exception("job %s failed with an internal error", job.id)
                outcome = Outcome(JobStatus.FAILED, None, "internal error")
        try:
            with timing.stage("store:release"):
                outcome, claimed = finish_and_claim(self.gw, job, outcome, next_for)
        except Exception:
            log.exception("job %s could not be finalised; releasing nothing", job.id)
            # The kind's bookkeeping still done (a verify job's answers counted, its keys gone):
            # the query did run.
            failed = Outcome(
                JobStatus.FAILED, None, "the result could not be recorded", settle=outcome.settle
            )
            try:
                outcome = finish(self.gw, job, failed)
            except Exception:
                if failed.settle is None:
                    raise
                # The bookkeeping itself may be what fails: end the job without it (nothing
                # is released; its keys go with the failure).
                log.exception("job %s: its bookkeeping failed too; failing it without", job.id)
                outcome = finish(self.gw, job, dataclasses.replace(failed, settle=None))
        finally:
            self.gw.handoffs.stopped(job.id)  # before the announcement (`Handoffs`)
            self.gw.jobs_finished.notify(job.id)
        kind = self._kinds.get(job.content_hash, "unknown")
        for hook in self.gw.job_hooks:
            hook(kind, outcome.status.value, time.monotonic() - started)
        return claimed


def finish(gw: Gateway, job: Job, outcome: Outcome) -> Outcome:
    """Record the job's end in one transaction (the outcome, the kind's bookkeeping, the DP
    ledger, the audit entry, the result); return the outcome recorded (a kind's bookkeeping
    may turn a release into a failure), or the one given when a later run holds the job."""
    return finish_and_claim(gw, job, outcome)[0]


def finish_and_claim(
    gw: Gateway, job: Job, outcome: Outcome, next_for: str | None = None
) -> tuple[Outcome, Claimed | None]:
    """`finish`; with `next_for` (a worker id), the same transaction also claims the next
    job for that worker as `claim` would (`model.claim_fair`: the queue's order, the running
    cap; `job.started` appended with the end's entry), so a busy worker goes from one job to
    the next without a claim transaction of its own. The claim's locks come after the ended
    job's and the ledger's and before the audit log's, the order of every other claim."""
    now = datetime.now(UTC)
    claimed: Claimed | None = None
    details: dict[str, Any] = {
        "job": job.id,
        "template": job.template_id,
        "version": job.version,
        "content_hash": job.content_hash,
    }
    with gw.db.begin() as conn:
        # Only the run that still holds the job's lease may finish it: a worker whose lease
        # expired must not store a result, nor settle the budget, after another run took over.
        ended = model.mark_finished(
            conn, job.id, outcome.status, now=now, error=outcome.error, owner=job.lease_owner
        )
        if ended is None:
            log.warning("job %s was finished or reclaimed; its late outcome is dropped", job.id)
            return outcome, None
        if outcome.settle is None and outcome.status is not JobStatus.RELEASED:
            # A verify job that ends without its release's bookkeeping keeps no keys (a
            # released one's bookkeeping deletes them; other kinds have none).
            verify_keys.forget(conn, job.id)
        refusal = None if outcome.settle is None else outcome.settle(conn)
        if refusal is not None:
            outcome = dataclasses.replace(
                outcome, status=JobStatus.FAILED, result=None, error=refusal, findings=()
            )
            ended = model.amend_finished(conn, job.id, outcome.status, error=refusal)
        details.update(
            outcome.parties
            if outcome.parties is not None
            else templates.responsible_parties(conn, job.template_id, job.version)
        )
        event = f"job.{outcome.status.value}"
        if outcome.result is not None:
            digest = result_hash(outcome.result)
            details.update(
                result=gw.audit.fingerprint(digest),
                result_hash=digest,
                profiles=outcome.result.get("profiles", {}),
                rows=len(outcome.result["rows"]),
                withheld=len(outcome.result["withheld"]),
            )
        else:
            details["error"] = outcome.error
        # The DP ledger: commit the reservation with the release, give it back otherwise (a job
        # that is not `dp` has none: nothing to look up).
        if outcome.reserved:
            details.update(ledger.settle(conn, job.id, released=outcome.result is not None))
        if outcome.policy_version is not None:
            details["policy_version"] = outcome.policy_version
        entries: list[dict[str, Any]] = [
            {
                "type": event,
                "principal": actor_of_job(job),
                "action": "run",
                "target": f"job:{job.id}",
                "allowed": True,
                "details": details,
            }
        ]
        if next_for is not None:
            claimed = _claim_in(gw, conn, next_for, now)
            if claimed is not None:
                entries.append(_started(claimed.job, next_for))
        index = gw.audit.record_many(conn, entries)[0]
        if outcome.findings:  # a comparison: each finding to the department that corrects it
            inbox.deliver(conn, gw, job, actor_of_job(job), outcome.findings)
        stored = None
        if outcome.result is not None:
            stored = model.StoredResult(outcome.result, details["result_hash"], index)
            model.store_result(conn, job.id, stored, now=now)
    if gw.jobs_finished.listening(job.id):  # committed: a wait here takes it, not a read
        gw.handoffs.put(ended, None if stored is None else model.as_read_back(stored))
    gw.audit.nudge()  # sign a checkpoint covering the release soon, off the request path
    return outcome, claimed


class WorkerPool:
    """Worker threads, and a heartbeat that renews their leases and restarts a dead thread."""

    def __init__(self, gw: Gateway, *, size: int, poll_s: float = 0.5) -> None:
        self.gw = gw
        self.runner = Runner(gw)
        self._size = size
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._threads: dict[str, threading.Thread] = {}
        self._held: dict[str, str] = {}  # worker id -> id of the job it runs
        self._held_lock = threading.Lock()
        self._heartbeat: threading.Thread | None = None
        self.restarts = 0  # worker threads restarted by the heartbeat (metrics, tests)

    def start(self) -> None:
        self._stop.clear()
        for _ in range(self._size):
            self._spawn()
        self._heartbeat = threading.Thread(
            target=self._beat, name="insitu-lease-heartbeat", daemon=True
        )
        self._heartbeat.start()

    def _spawn(self) -> None:
        name = f"insitu-worker-{uuid.uuid4().hex[:12]}"
        thread = threading.Thread(target=self._loop, args=(name,), name=name, daemon=True)
        self._threads[name] = thread
        thread.start()

    def alive(self) -> bool:
        """Every worker thread and the heartbeat are running."""
        threads = list(self._threads.values())
        beat = self._heartbeat
        return (
            not self._stop.is_set()
            and len(threads) == self._size
            and all(t.is_alive() for t in threads)
            and beat is not None
            and beat.is_alive()
        )

    def stop(self) -> None:
        self._stop.set()
        self.gw.idle_workers.wake()  # idle workers see the stop now, not at their next poll
        self.gw.jobs_finished.notify()
        for thread in [*self._threads.values(), self._heartbeat]:
            if thread is not None:
                thread.join(timeout=self.gw.settings.job_timeout_s + 5)
        self._threads.clear()
        self._heartbeat = None

    def _beat(self) -> None:
        interval = self.gw.settings.job_lease_s / 3
        while not self._stop.wait(interval):
            try:
                self._renew()
            except Exception:  # the store is away: leases may lapse, jobs then run again
                log.warning("job leases could not be renewed", exc_info=True)
            for name, thread in list(self._threads.items()):
                if not thread.is_alive() and not self._stop.is_set():
                    log.error("worker thread %s died; starting another", name)
                    del self._threads[name]
                    self.restarts += 1
                    self._spawn()

    def _renew(self) -> None:
        with self._held_lock:
            held = dict(self._held)
        if not held:
            return
        until = datetime.now(UTC) + timedelta(seconds=self.gw.settings.job_lease_s)
        with self.gw.db.begin() as conn:
            for worker_id, job_id in held.items():
                model.renew_leases(conn, [job_id], worker_id=worker_id, until=until)

    def _loop(self, worker_id: str) -> None:
        failures = 0
        idle = self.gw.idle_workers
        claimed: Claimed | None = None  # claimed with the last job's end
        looked = time.monotonic()  # the last full look (expired leases first: `claim`)
        look_every_s = self.gw.settings.job_lease_s / 3
        while claimed is not None or not self._stop.is_set():
            if claimed is None:
                seen = idle.generation()
                try:
                    claimed = claim(self.gw, worker_id)
                except Exception:
                    failures += 1
                    log.warning("claiming a job failed; retrying", exc_info=True)
                    self._stop.wait(min(MAX_BACKOFF_S, self._poll_s * 2**failures))
                    continue
                failures, looked = 0, time.monotonic()
            if claimed is None:
                # Idle: woken by a queued job, or handed one its submission claimed for this
                # worker (`gateway.jobs.idle`, with the catalogue's version its transaction read).
                claimed = idle.wait(worker_id, seen, timeout=self._poll_s)
                if claimed is None:
                    continue
                timing.RECORDER.since_time("queue", claimed.job.created_at)
            job, catalogue_seen = claimed.job, claimed.catalogue_seen
            # The next job is claimed with this one's end while the pool runs, and a full look
            # (a job whose lease expired goes first) is at most a third of a lease old.
            fold = not self._stop.is_set() and time.monotonic() - looked < look_every_s
            with self._held_lock:
                self._held[worker_id] = job.id
            try:
                claimed = self.runner.run(job, catalogue_seen, worker_id if fold else None)
            except Exception:
                # Not even a failure could be recorded: the lease lapses and the job runs again.
                claimed = None
                failures += 1
                log.error("job %s left to its lease after a store error", job.id, exc_info=True)
                self._stop.wait(min(MAX_BACKOFF_S, self._poll_s * 2**failures))
            finally:
                with self._held_lock:
                    self._held.pop(worker_id, None)
