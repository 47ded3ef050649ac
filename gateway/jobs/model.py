"""A job: its states, its typed record, and the `jobs` / `job_results` tables it lives in.

    accepted ──▶ running ──▶ released | suppressed | failed
        │           │
        └───────────┴──(its department cancels)──▶ cancelled
                  │  ▲
                  └──┘ lease expired: reclaimed by any replica and run again (job.reclaimed)
    (a refused submission creates no job: it is audited as `job.denied` / `job.rejected`)

A running job is leased: `lease_owner` (the worker) holds it until `lease_expires_at` and
renews the lease while the job runs. Only the lease's holder may finish the job. A release is
one transaction (result, status, audit entry), so a running job has released nothing and a
reclaimed one is run again from scratch.

This module owns both tables: every read and write of them is a function here.
`gateway.jobs.worker` is the only caller that moves a job between states.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

import sqlalchemy as sa

from gateway.errors import NotFound
from gateway.store import db, schema


class JobStatus(StrEnum):
    ACCEPTED = "accepted"
    RUNNING = "running"
    RELEASED = "released"
    SUPPRESSED = "suppressed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = {JobStatus.RELEASED, JobStatus.SUPPRESSED, JobStatus.FAILED, JobStatus.CANCELLED}
UNFINISHED = (JobStatus.ACCEPTED.value, JobStatus.RUNNING.value)


@dataclass(frozen=True, slots=True)
class Job:
    """One job as stored: what was asked, by whom, and where it stands."""

    id: str
    template_id: str
    version: int
    content_hash: str
    parameters: dict[str, Any]
    purpose: str
    purpose_ids: tuple[str, ...]
    subject: str
    department: str
    roles: tuple[str, ...]
    status: str
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker: str | None = None
    error: str | None = None
    audit_index: int | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    attempts: int = 0

    @classmethod
    def of(cls, row: Any) -> Job:
        return cls(
            id=row.id,
            template_id=row.template_id,
            version=int(row.version),
            content_hash=row.content_hash,
            parameters=dict(row.parameters),
            purpose=row.purpose,
            purpose_ids=tuple(row.purpose_ids or ()),  # NULL on jobs from before revision 0009
            subject=row.subject,
            department=row.department,
            roles=tuple(row.roles),
            status=row.status,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            worker=row.worker,
            error=row.error,
            audit_index=None if row.audit_index is None else int(row.audit_index),
            lease_owner=row.lease_owner,
            lease_expires_at=row.lease_expires_at,
            attempts=int(row.attempts or 0),
        )


@dataclass(frozen=True, slots=True)
class StoredResult:
    result: dict[str, Any]
    result_hash: str
    audit_index: int


def load_job(conn: sa.Connection, job_id: str) -> Job:
    row = conn.execute(sa.select(schema.jobs).where(schema.jobs.c.id == job_id)).first()
    if row is None:
        raise NotFound("no such job")
    return Job.of(row)


def insert(conn: sa.Connection, job: Job) -> None:
    conn.execute(
        schema.jobs.insert().values(
            id=job.id,
            template_id=job.template_id,
            version=job.version,
            content_hash=job.content_hash,
            parameters=job.parameters,
            purpose=job.purpose,
            purpose_ids=list(job.purpose_ids),
            subject=job.subject,
            department=job.department,
            roles=list(job.roles),
            status=job.status,
            created_at=job.created_at,
            audit_index=job.audit_index,  # its `job.accepted` entry, appended first
            # a job handed to an idle worker is inserted already claimed (`gateway.jobs.idle`)
            started_at=job.started_at,
            worker=job.worker,
            lease_owner=job.lease_owner,
            lease_expires_at=job.lease_expires_at,
            attempts=job.attempts,
        )
    )


def any_waiting(conn: sa.Connection) -> bool:
    j = schema.jobs
    waiting = sa.select(j.c.id).where(j.c.status == JobStatus.ACCEPTED.value).limit(1)
    return conn.execute(waiting).first() is not None


def any_expired(conn: sa.Connection, now: datetime) -> bool:
    """Is some running job's lease expired (its worker or gateway died)?"""
    j = schema.jobs
    expired = sa.or_(j.c.lease_expires_at.is_(None), j.c.lease_expires_at < now)
    found = sa.select(j.c.id).where(j.c.status == JobStatus.RUNNING.value, expired).limit(1)
    return conn.execute(found).first() is not None


def _lease(worker_id: str, now: datetime, lease_s: float) -> dict[str, Any]:
    """The columns a claim sets: the lease, and one more attempt."""
    return {
        "lease_owner": worker_id,
        "lease_expires_at": now + timedelta(seconds=lease_s),
        "attempts": schema.jobs.c.attempts + 1,
    }


def claim_fair(
    conn: sa.Connection,
    *,
    worker_id: str,
    now: datetime,
    running_cap: int,
    lease_s: float = 30.0,
    also: tuple[sa.Label[Any], ...] = (),
) -> tuple[Job, Any] | None:
    """Inside the caller's transaction: mark the next accepted job running for `worker_id`,
    leased for `lease_s` seconds; return it with the claim's row, which also holds the columns
    `also` (labelled scalar subqueries, read in the same statement).

    Fair between departments: among departments with fewer than `running_cap` jobs running,
    the one with the fewest running goes first, then the one whose turn is longest ago
    (`department_turns`: round-robin), and within a department the oldest job. One
    department's flood therefore never holds every worker, and another department's job is
    next as soon as a worker is free.

    On PostgreSQL the row is taken `FOR UPDATE SKIP LOCKED` (replicas share one queue; the cap
    may then be passed by one job per concurrent claimer); on SQLite the transaction's write
    lock serialises claimers and the cap is exact."""
    row = conn.execute(
        _claim_statement(conn.dialect.name, also),
        {
            "claim_now": now,
            "claim_worker": worker_id,
            "claim_cap": running_cap,
            "claim_expires": now + timedelta(seconds=lease_s),
        },
    ).first()
    if row is None:
        return None
    job = Job.of(row)
    if conn.dialect.name != "postgresql":  # PostgreSQL's claim took the turn in its statement
        take_turn(conn, job.department, now)
    return job, row


def take_turn(conn: sa.Connection, department: str, now: datetime) -> None:
    """Inside the caller's transaction: `department` had its turn at `now` (round-robin)."""
    conn.execute(
        _turn_statement(conn.dialect.name), {"turn_department": department, "turn_at": now}
    )


def leased(job: Job, *, worker_id: str, now: datetime, lease_s: float) -> Job:
    """`job` as a claim by `worker_id` at `now` leaves it (running, leased, one attempt more)."""
    return dataclasses.replace(
        job,
        status=JobStatus.RUNNING.value,
        started_at=now,
        worker=worker_id,
        lease_owner=worker_id,
        lease_expires_at=now + timedelta(seconds=lease_s),
        attempts=job.attempts + 1,
    )


@functools.cache
def _claim_statement(dialect: str, also: tuple[sa.Label[Any], ...]) -> sa.Update | sa.Select[Any]:
    """`claim_fair`'s one statement, built once per dialect (its values bound at each call):
    the pick (an uncorrelated subquery, evaluated once: on PostgreSQL the row it returns is
    locked, a row another claimer holds skipped), the claim, and the claimed row. On
    PostgreSQL the department's turn is taken in the same statement (a data-modifying `WITH`:
    the claim's `UPDATE … RETURNING` feeds the turn's upsert); SQLite has no such `WITH`, and
    `claim_fair` takes the turn with a second statement in the same transaction."""
    j = schema.jobs
    waiting = j.alias("waiting")  # the UPDATE's own `jobs` stays apart from the pick's
    running = sa.select(j.c.department, sa.func.count().label("n")).where(
        j.c.status == JobStatus.RUNNING.value
    )
    busy = running.group_by(j.c.department).subquery("busy")
    load = sa.func.coalesce(busy.c.n, 0)
    turns = schema.department_turns
    pick = (
        sa.select(waiting.c.id)
        .select_from(
            waiting.outerjoin(busy, busy.c.department == waiting.c.department).outerjoin(
                turns, turns.c.department == waiting.c.department
            )
        )
        .where(waiting.c.status == JobStatus.ACCEPTED.value, load < sa.bindparam("claim_cap"))
        .order_by(load, sa.nulls_first(turns.c.last_claimed_at), waiting.c.created_at)
        .limit(1)
    )
    if dialect == "postgresql":
        pick = pick.with_for_update(of=waiting, skip_locked=True)
    claim = (
        j.update()
        .where(j.c.id == pick.correlate(None).scalar_subquery())
        .values(
            status=JobStatus.RUNNING.value,
            started_at=sa.bindparam("claim_now"),
            worker=sa.bindparam("claim_worker"),
            lease_owner=sa.bindparam("claim_worker"),
            lease_expires_at=sa.bindparam("claim_expires"),
            attempts=j.c.attempts + 1,  # as `_lease`
        )
        .returning(*j.c, *also)
    )
    if dialect != "postgresql":
        return claim
    claimed = claim.cte("claimed")
    turns = schema.department_turns
    taken = db.upsert(dialect, turns).from_select(
        [turns.c.department, turns.c.last_claimed_at],
        sa.select(
            claimed.c.department, sa.bindparam("claim_now", type_=turns.c.last_claimed_at.type)
        ),
    )
    turn = taken.on_conflict_do_update(
        index_elements=[turns.c.department],
        set_={"last_claimed_at": taken.excluded.last_claimed_at},
    )
    return sa.select(claimed).add_cte(turn.cte("turn"))


@functools.cache
def _turn_statement(dialect: str) -> sa.Insert:
    """The department's turn taken (`department_turns`, round-robin), built once per dialect."""
    turns = schema.department_turns
    statement = db.upsert(dialect, turns).values(
        department=sa.bindparam("turn_department"), last_claimed_at=sa.bindparam("turn_at")
    )
    return statement.on_conflict_do_update(
        index_elements=[turns.c.department], set_={"last_claimed_at": sa.bindparam("turn_at")}
    )


def claim_expired(
    conn: sa.Connection, *, worker_id: str, now: datetime, lease_s: float
) -> tuple[Job, Job] | None:
    """Inside the caller's transaction: take over one running job whose lease expired (its
    worker or its gateway died). Returns (the job as it was, the job as now leased).

    A job running from before leases existed (no expiry) counts as expired."""
    j = schema.jobs
    expired = sa.or_(j.c.lease_expires_at.is_(None), j.c.lease_expires_at < now)
    query = (
        sa.select(j)
        .where(j.c.status == JobStatus.RUNNING.value, expired)
        .order_by(j.c.created_at)
        .limit(1)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    found = conn.execute(query).first()
    if found is None:
        return None
    taken = conn.execute(
        j.update()
        .where(j.c.id == found.id, j.c.status == JobStatus.RUNNING.value, expired)
        .values(started_at=now, worker=worker_id, **_lease(worker_id, now, lease_s))
        .returning(*j.c)
    ).first()
    if taken is None:
        return None
    return Job.of(found), Job.of(taken)


def renew_leases(
    conn: sa.Connection, job_ids: Sequence[str], *, worker_id: str, until: datetime
) -> set[str]:
    """Extend the leases `worker_id` still holds on running jobs; return the ids renewed."""
    if not job_ids:
        return set()
    j = schema.jobs
    held = sa.and_(
        j.c.id.in_(list(job_ids)),
        j.c.lease_owner == worker_id,
        j.c.status == JobStatus.RUNNING.value,
    )
    renewed = conn.execute(j.update().where(held).values(lease_expires_at=until).returning(j.c.id))
    return {str(i) for i in renewed.scalars()}


def mark_finished(
    conn: sa.Connection,
    job_id: str,
    status: JobStatus,
    *,
    now: datetime,
    error: str | None,
    owner: str | None = None,
) -> Job | None:
    """Move a running job to its end state and return its row as it now stands; None if it is
    no longer running (someone else finished it) or, with `owner`, no longer leased to `owner`
    (another replica reclaimed it). The conditional UPDATE serialises two finishers on
    PostgreSQL too."""
    j = schema.jobs
    where = [j.c.id == job_id, j.c.status == JobStatus.RUNNING.value]
    if owner is not None:
        where.append(j.c.lease_owner == owner)
    row = conn.execute(
        j.update()
        .where(*where)
        .values(status=status.value, finished_at=now, error=error, lease_expires_at=None)
        .returning(*j.c)
    ).first()
    return None if row is None else Job.of(row)


def amend_finished(conn: sa.Connection, job_id: str, status: JobStatus, *, error: str) -> Job:
    """Change the end state `mark_finished` has just set, in the same transaction (the row is
    this transaction's: locked on PostgreSQL, the write lock held on SQLite); return the row."""
    j = schema.jobs
    row = conn.execute(
        j.update().where(j.c.id == job_id).values(status=status.value, error=error).returning(*j.c)
    ).one()
    return Job.of(row)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A claimed job and the catalogue's version read by the claiming statement (None for a
    reclaimed job): the run's checks use it instead of reading it again. A claim reads it
    after the job was accepted; a submission that claims its own job for an idle worker
    (`gateway.jobs.idle`) reads it in the accepting transaction, after its admission
    decision, so a change committed before that read is seen either way."""

    job: Job
    catalogue_seen: int | None = None


@dataclass(frozen=True, slots=True)
class Unfinished:
    """What a submission's transaction sees of the queue: the caller's and its department's
    jobs accepted and not yet finished, how many of the department's are running, whether
    any job (of any department) waits to be claimed, and whether the statement that read
    this also took the department's turn for a hand-over (`unfinished`'s `turn_at`)."""

    mine: int
    department: int
    running: int
    waiting: bool
    turn_taken: bool = False

    def may_hand_over(self, running_cap: int) -> bool:
        """Whether a job may go straight to an idle worker: none waits in the queue (it would
        be overtaken) and the department is under the running cap, as a claim requires."""
        return not self.waiting and self.running < running_cap


def unfinished(
    conn: sa.Connection,
    *,
    subject: str,
    department: str,
    also: tuple[sa.Label[Any], ...] = (),
    turn_at: datetime | None = None,
    running_cap: int = 0,
) -> tuple[Unfinished, sa.Row[Any]]:
    """`Unfinished`, in one statement, with its row, which also holds the columns `also`
    (labelled scalar subqueries, read in the same statement).

    `turn_at` (a submission holding an idle worker): on PostgreSQL the same statement takes
    the department's turn at `turn_at` (`take_turn`) when the job may be handed over
    (`Unfinished.may_hand_over(running_cap)`, decided on the same snapshot), and says so in
    `turn_taken`; on SQLite the caller takes it in a statement of its own."""
    fold = turn_at is not None and conn.dialect.name == "postgresql"
    params: dict[str, Any] = {"unfinished_subject": subject, "unfinished_dept": department}
    if fold:
        params.update(turn_at=turn_at, running_cap=running_cap)
    row = conn.execute(_unfinished_statement(also, fold), params).one()
    queue = Unfinished(int(row[0]), int(row[1]), int(row[2]), bool(row[3]))
    if fold and queue.may_hand_over(running_cap):
        queue = dataclasses.replace(queue, turn_taken=True)
    return queue, row


@functools.cache
def _unfinished_statement(also: tuple[sa.Label[Any], ...], turn: bool) -> sa.Select[Any]:
    j = schema.jobs
    dept = sa.bindparam("unfinished_dept", type_=j.c.department.type)
    waiting = j.alias("waiting")
    any_waiting = sa.exists(
        sa.select(waiting.c.id).where(waiting.c.status == JobStatus.ACCEPTED.value)
    )
    statement = sa.select(
        sa.func.count().filter(j.c.subject == sa.bindparam("unfinished_subject")),
        sa.func.count(),
        sa.func.count().filter(j.c.status == JobStatus.RUNNING.value),
        any_waiting,
        *also,
    ).where(j.c.department == dept, j.c.status.in_(UNFINISHED))
    if not turn:
        return statement
    # PostgreSQL runs a data-modifying WITH whether or not the query reads it; both parts see
    # one snapshot, so the turn is taken exactly when `Unfinished.may_hand_over` says yes.
    running = j.alias("running")
    running_now = (
        sa.select(sa.func.count())
        .where(running.c.department == dept, running.c.status == JobStatus.RUNNING.value)
        .scalar_subquery()
    )
    turns = schema.department_turns
    taken = sa.select(dept, sa.bindparam("turn_at", type_=turns.c.last_claimed_at.type)).where(
        ~any_waiting, running_now < sa.bindparam("running_cap", type_=sa.Integer)
    )
    insert = db.upsert("postgresql", turns).from_select(
        [turns.c.department, turns.c.last_claimed_at], taken
    )
    upsert = insert.on_conflict_do_update(
        index_elements=[turns.c.department],
        set_={"last_claimed_at": insert.excluded.last_claimed_at},
    )
    return statement.add_cte(upsert.cte("turn"))


def cancel(conn: sa.Connection, job_id: str, *, now: datetime) -> bool:
    """Cancel an unfinished job; False if it had finished. A worker still running it then
    finds it no longer running and drops its outcome (`mark_finished`)."""
    j = schema.jobs
    changed = conn.execute(
        j.update()
        .where(j.c.id == job_id, j.c.status.in_(UNFINISHED))
        .values(
            status=JobStatus.CANCELLED.value,
            finished_at=now,
            error="cancelled",
            lease_expires_at=None,
        )
    )
    return changed.rowcount == 1


def store_result(conn: sa.Connection, job_id: str, stored: StoredResult, *, now: datetime) -> None:
    conn.execute(
        schema.job_results.insert().values(
            job_id=job_id,
            result=stored.result,
            result_hash=stored.result_hash,
            audit_index=stored.audit_index,
            created_at=now,
        )
    )


# A job and its stored result (if any) in one query: the columns of `job_results` that are
# not the job's, under names of their own.
_JOB_AND_RESULT: Final = (
    sa.select(
        schema.jobs,
        schema.job_results.c.result.label("stored_result"),
        schema.job_results.c.result_hash.label("stored_result_hash"),
        schema.job_results.c.audit_index.label("stored_audit_index"),
    )
    .select_from(schema.jobs.outerjoin(schema.job_results))
    .where(schema.jobs.c.id == sa.bindparam("job_id"))
)


def load_job_and_result(conn: sa.Connection, job_id: str) -> tuple[Job, StoredResult | None]:
    """`load_job` and `load_result` in one query (a released job's result is stored in the
    transaction that ends it, so the two are consistent)."""
    row = conn.execute(_JOB_AND_RESULT, {"job_id": job_id}).first()
    if row is None:
        raise NotFound("no such job")
    if row.stored_result_hash is None:
        return Job.of(row), None
    stored = StoredResult(
        dict(row.stored_result), row.stored_result_hash, int(row.stored_audit_index)
    )
    return Job.of(row), stored


def as_read_back(stored: StoredResult) -> StoredResult:
    """`stored` as a read of `job_results` gives it back: its result through the JSON column's
    round trip (SQLAlchemy's default serialiser, `json.dumps`, then `json.loads`)."""
    return StoredResult(
        json.loads(json.dumps(stored.result)), stored.result_hash, stored.audit_index
    )


def load_result(conn: sa.Connection, job_id: str) -> StoredResult | None:
    r = schema.job_results
    row = conn.execute(sa.select(r).where(r.c.job_id == job_id)).first()
    if row is None:
        return None
    return StoredResult(dict(row.result), row.result_hash, int(row.audit_index))


def departments(conn: sa.Connection) -> Sequence[str]:
    """Every department that has submitted a job."""
    return [str(d) for d in conn.execute(sa.select(schema.jobs.c.department).distinct()).scalars()]


def list_jobs(
    conn: sa.Connection,
    *,
    department: str,
    subject: str | None,
    status: str | None,
    template: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> list[Job]:
    """A department's jobs (one subject's when given), newest first, one page."""
    j = schema.jobs
    query = sa.select(j).where(j.c.department == department)
    if subject is not None:
        query = query.where(j.c.subject == subject)
    if status is not None:
        query = query.where(j.c.status == status)
    if template is not None:
        query = query.where(j.c.template_id == template)
    if since is not None:
        query = query.where(j.c.created_at >= since)
    if until is not None:
        query = query.where(j.c.created_at < until)
    query = query.order_by(j.c.created_at.desc(), j.c.id.desc()).offset(offset).limit(limit)
    return [Job.of(row) for row in conn.execute(query)]


def count_unfinished(conn: sa.Connection) -> dict[str, int]:
    """Accepted and running jobs in the store (every replica's), by status."""
    j = schema.jobs
    rows = conn.execute(
        sa.select(j.c.status, sa.func.count())
        .where(j.c.status.in_(UNFINISHED))
        .group_by(j.c.status)
    ).all()
    counts = dict.fromkeys(UNFINISHED, 0)
    counts.update({str(status): int(n) for status, n in rows})
    return counts


def job_view(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "status": job.status,
        "template": job.template_id,
        "version": job.version,
        "content_hash": job.content_hash,
        "subject": job.subject,
        "department": job.department,
        "purpose": job.purpose,
        "parameters": job.parameters,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "error": job.error,
        "audit_index": job.audit_index,
    }
