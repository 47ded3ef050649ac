"""Jobs handed to a worker without a claim transaction of their own (issue 13), on SQLite and
on PostgreSQL. At acceptance (`gateway.jobs.idle`): claimed for an idle worker in the
transaction that accepts it, as a claim would record it (lease, `job.started`, the
department's turn), then run and released by that worker; never when a job waits in the queue
(it would be overtaken) nor when the department is at its running cap; a refused submission
gives the worker back. At a release (`worker.finish_and_claim`): the worker's next job claimed
in the transaction that records the end, in the queue's order and within the running cap.

The app runs no worker threads unless a test starts the pool: a test's idle worker is the real
`IdleWorkers.wait` on a thread of its own, and a run is the worker's own `Runner`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any
from unittest import mock

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from gateway.api import create_app
from gateway.catalogue import cache as catalogue_cache
from gateway.context import Gateway
from gateway.jobs import model, worker
from gateway.jobs import reads as reads_module
from gateway.jobs.model import Claimed
from gateway.store import db, schema
from tests.integration.conftest import Caller, World
from tests.integration.test_fair_jobs import (  # noqa: F401  (fixtures)
    JOB,
    audit_types,
    gateway_of,
    submitted,
    two_departments,
    world,
)

GUARD_S = 30.0  # only stops a broken test from hanging


@pytest.fixture
def threads() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as executor:
        yield executor


def idle(threads: ThreadPoolExecutor, gw: Gateway, worker_id: str) -> Future[Claimed | None]:
    """`worker_id` waiting for a job, as a worker thread that found none to claim."""
    before = gw.idle_workers.idle()
    found = threads.submit(gw.idle_workers.wait, worker_id, gw.idle_workers.generation(), GUARD_S)
    deadline = time.monotonic() + GUARD_S
    while gw.idle_workers.idle() == before:
        assert time.monotonic() < deadline, "the worker never went idle"
        time.sleep(0.001)
    return found


def handed(threads: ThreadPoolExecutor, gw: Gateway, caller: Caller) -> tuple[str, Claimed]:
    """A job `caller` submits while worker "w-idle" waits: its id, and the job as handed over
    (listed as running here)."""
    waiting = idle(threads, gw, "w-idle")
    job_id = submitted(caller)
    claimed = waiting.result(GUARD_S)
    assert claimed is not None and claimed.job.id == job_id
    assert gw.handoffs.running(job_id) is not None
    return job_id, claimed


def status_of(caller: Caller, job_id: str) -> str:
    response = caller.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


def turns(gw: Gateway) -> dict[str, datetime]:
    """Each department's last turn (`department_turns`), as the store holds them."""
    with db.reading(gw.db) as conn:
        rows = conn.execute(sa.select(schema.department_turns)).all()
    return {row.department: row.last_claimed_at for row in rows}


def test_a_job_goes_to_an_idle_worker_claimed_in_its_acceptance(
    world: World,  # noqa: F811
    two_departments: tuple[Caller, Caller],  # noqa: F811
    threads: ThreadPoolExecutor,
) -> None:
    stats, _ = two_departments
    gw = gateway_of(world)
    waiting = idle(threads, gw, "w-idle")
    response = stats.submit(JOB)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "accepted"  # the submission's outcome
    job_id = response.json()["id"]
    claimed = waiting.result(GUARD_S)
    assert claimed is not None and claimed.job.id == job_id
    job = claimed.job
    with db.reading(gw.db) as conn:  # the accepting transaction's read, as a claim's
        assert claimed.catalogue_seen == catalogue_cache.version(conn)
    assert (job.status, job.lease_owner, job.worker, job.attempts) == (
        "running",
        "w-idle",
        "w-idle",
        1,
    )
    assert job.lease_expires_at is not None and job.started_at == job.created_at
    assert turns(gw) == {"stats": job.created_at}  # its department's turn, as a claim's
    assert status_of(stats, job_id) == "running"  # the row as the store holds it
    assert worker.claim_next(gw, "w2") is None  # nothing was left in the queue
    entries = [e for e in audit_types(world) if e["target"] == f"job:{job_id}"]
    assert [e["type"] for e in entries] == ["job.accepted", "job.started", "job.read"]
    assert entries[1]["details"] == {"job": job_id, "worker": "w-idle"}
    assert entries[1]["actor"] == entries[0]["actor"]
    worker.Runner(gw).run(job, claimed.catalogue_seen)  # the worker's run, as after a claim
    result = stats.get(f"/v1/jobs/{job_id}/result")
    assert result.status_code == 200 and result.json()["status"] == "released", result.text
    assert result.json()["rows"]


def test_a_retirement_after_the_admission_stops_a_handed_job(
    world: World,  # noqa: F811
    two_departments: tuple[Caller, Caller],  # noqa: F811
    owners: dict[str, Caller],
    threads: ThreadPoolExecutor,
) -> None:
    """Another replica retires the version after this one's admission decision and before
    its transaction: the job is accepted (the admission saw it approved), and its worker,
    which reads nothing, refuses it under the version the accepting transaction read."""
    stats, _ = two_departments
    gw = gateway_of(world)
    waiting = idle(threads, gw, "w-idle")
    take = gw.idle_workers.take
    with TestClient(create_app(world.settings)) as client:  # a second gateway, same store
        owner = Caller(client, owners["market"].token)

        def retire_then_take() -> Any:  # between the admission and the transaction
            retired = owner.post(
                f"/v1/templates/{JOB['template']}/versions/1/retirement", json={"reason": "test"}
            )
            assert retired.status_code == 201, retired.text
            return take()

        with mock.patch.object(gw.idle_workers, "take", retire_then_take):
            job_id = submitted(stats)
    claimed = waiting.result(GUARD_S)
    assert claimed is not None and claimed.job.id == job_id
    worker.Runner(gw).run(claimed.job, claimed.catalogue_seen)
    shown = stats.get(f"/v1/jobs/{job_id}").json()
    assert (shown["status"], shown["error"]) == (
        "failed",
        "the template version is no longer approved",
    ), shown


def test_a_wait_for_a_job_running_here_begins_without_a_read(
    world: World,  # noqa: F811
    two_departments: tuple[Caller, Caller],  # noqa: F811
    threads: ThreadPoolExecutor,
) -> None:
    """A job this replica's worker runs is known here until its end is announced: a wait for
    it starts listening at once and takes the end its worker hands over, reading no job row;
    another department still finds no such job."""
    stats, planning = two_departments
    gw = gateway_of(world)
    job_id, claimed = handed(threads, gw, stats)
    other = planning.get(f"/v1/jobs/{job_id}/result", params={"wait": 0.1})
    assert other.status_code == 404, other.text  # as for a job that does not exist
    reads: list[str] = []
    original = model.load_job_and_result

    def counted(conn: Any, wanted: str) -> Any:
        reads.append(wanted)
        return original(conn, wanted)

    def run_soon() -> None:
        deadline = time.monotonic() + GUARD_S
        while not gw.jobs_finished.listening(job_id):  # the wait below listens
            assert time.monotonic() < deadline, "the wait never listened"
            time.sleep(0.001)
        worker.Runner(gw).run(claimed.job, claimed.catalogue_seen)

    with (
        mock.patch.object(model, "load_job_and_result", counted),
        mock.patch.object(reads_module, "load_job_and_result", counted),
    ):
        ran = threads.submit(run_soon)
        result = stats.get(f"/v1/jobs/{job_id}/result", params={"wait": GUARD_S})
        ran.result(GUARD_S)
    assert result.status_code == 200 and result.json()["status"] == "released", result.text
    assert reads == []  # neither to begin with nor once ended: the worker handed it over
    assert gw.handoffs.running(job_id) is None


def test_a_cancelled_job_running_here_is_no_longer_listed(
    world: World,  # noqa: F811
    two_departments: tuple[Caller, Caller],  # noqa: F811
    threads: ThreadPoolExecutor,
) -> None:
    """A cancel ends the job: a wait from then on reads the store and answers at once."""
    stats, _ = two_departments
    gw = gateway_of(world)
    job_id, claimed = handed(threads, gw, stats)
    cancelled = stats.request("DELETE", f"/v1/jobs/{job_id}")
    assert cancelled.status_code == 200, cancelled.text
    assert gw.handoffs.running(job_id) is None
    result = stats.get(f"/v1/jobs/{job_id}/result", params={"wait": GUARD_S})
    assert result.status_code == 200 and result.json()["status"] == "cancelled", result.text
    worker.Runner(gw).run(claimed.job, claimed.catalogue_seen)  # its late outcome is dropped
    assert status_of(stats, job_id) == "cancelled"


def test_a_waiting_job_is_not_overtaken(
    world: World,  # noqa: F811
    two_departments: tuple[Caller, Caller],  # noqa: F811
    threads: ThreadPoolExecutor,
) -> None:
    stats, planning = two_departments
    gw = gateway_of(world)
    first = submitted(stats)  # queued: no worker is idle
    waiting = idle(threads, gw, "w-idle")
    later = submitted(planning)
    assert waiting.result(GUARD_S) is None  # given back: it looks at the queue
    assert status_of(planning, later) == "accepted"
    assert turns(gw) == {}  # no turn taken: nothing was claimed
    claimed = worker.claim_next(gw, "w-idle")
    assert claimed is not None and claimed.id == first  # in the queue's order


def test_a_department_at_its_running_cap_is_not_handed_a_worker(
    world: World,  # noqa: F811
    two_departments: tuple[Caller, Caller],  # noqa: F811
    threads: ThreadPoolExecutor,
) -> None:
    stats, _ = two_departments
    gw = gateway_of(world)
    assert gw.settings.running_cap == 1
    running = idle(threads, gw, "w1")
    first = submitted(stats)
    handed = running.result(GUARD_S)
    assert handed is not None and handed.job.id == first
    taken = turns(gw)
    assert taken == {"stats": handed.job.created_at}
    waiting = idle(threads, gw, "w2")
    second = submitted(stats)
    assert waiting.result(GUARD_S) is None
    assert turns(gw) == taken  # not handed over: its turn stays the first job's
    assert status_of(stats, second) == "accepted"
    assert worker.claim_next(gw, "w2") is None  # the cap holds for a claim too


def test_a_refused_submission_gives_the_worker_back(
    world: World,  # noqa: F811
    two_departments: tuple[Caller, Caller],  # noqa: F811
    threads: ThreadPoolExecutor,
) -> None:
    stats, _ = two_departments
    gw = gateway_of(world)
    for _ in range(3):  # the caller's cap of unfinished jobs
        submitted(stats)
    waiting = idle(threads, gw, "w-idle")
    refused = stats.submit(JOB)
    assert refused.status_code == 429, refused.text
    assert waiting.result(GUARD_S) is None
    assert gw.idle_workers.idle() == 0 and gw.idle_workers.take() is None
    accepted = [e for e in audit_types(world) if e["type"] == "job.accepted"]
    assert len(accepted) == 3 and not [e for e in audit_types(world) if e["type"] == "job.started"]


def test_a_served_gateway_runs_a_handed_job_to_its_release(
    world: World,  # noqa: F811
    two_departments: tuple[Caller, Caller],  # noqa: F811
) -> None:
    """The worker pool's own threads: an idle one takes the job at acceptance."""
    stats, _ = two_departments
    gw = gateway_of(world)
    pool = worker.WorkerPool(gw, size=1, poll_s=GUARD_S)
    pool.start()
    try:
        deadline = time.monotonic() + GUARD_S
        while gw.idle_workers.idle() == 0:
            assert time.monotonic() < deadline, "the pool's worker never went idle"
            time.sleep(0.001)
        job_id = submitted(stats)
        result = stats.get(f"/v1/jobs/{job_id}/result", params={"wait": GUARD_S})
        assert result.status_code == 200 and result.json()["status"] == "released", result.text
    finally:
        pool.stop()
    types = [e["type"] for e in audit_types(world) if e["target"] == f"job:{job_id}"]
    assert types[:2] == ["job.accepted", "job.started"] and "job.released" in types
    # Started in its acceptance: a claim would have stamped the later moment it ran.
    shown = stats.get(f"/v1/jobs/{job_id}").json()
    assert shown["started_at"] == shown["created_at"], shown


def entries_of(served: World, job_id: str) -> dict[str, int]:
    """The index of each of a job's entries, by type."""
    auditor = served.as_("auditor@audit", "audit", "auditor")
    items = auditor.get("/v1/audit/entries", params={"limit": 1000}).json()["items"]
    target = f"job:{job_id}"
    return {i["event"]["type"]: i["index"] for i in items if i["event"]["target"] == target}


def test_a_release_claims_the_workers_next_job_in_its_transaction(
    world: World,  # noqa: F811
    two_departments: tuple[Caller, Caller],  # noqa: F811
) -> None:
    stats, planning = two_departments
    first, second, third = submitted(stats), submitted(stats), submitted(planning)
    gw = gateway_of(world)
    job = worker.claim_next(gw, "w1")
    assert job is not None and job.id == first
    assert worker.claim_next(gw, "w2") is not None  # planning's: stats is at its cap of one
    nxt = worker.Runner(gw).run(job, None, "w1")
    # the ended job no longer counts against stats' cap: its next job is this worker's
    assert nxt is not None and nxt.job.id == second
    assert (nxt.job.status, nxt.job.lease_owner, nxt.job.attempts) == ("running", "w1", 1)
    assert nxt.catalogue_seen is not None  # read by the claim, as `claim` reads it
    ended, started = entries_of(world, first), entries_of(world, second)
    assert started["job.started"] == ended["job.released"] + 1  # one append, in order
    assert status_of(stats, second) == "running"
    assert worker.Runner(gw).run(nxt.job, nxt.catalogue_seen, "w1") is None  # nothing waits
    for job_id in (first, second):
        body = stats.get(f"/v1/jobs/{job_id}/result").json()
        assert body["status"] == "released" and body["rows"], body
    assert status_of(planning, third) == "running"  # w2's, untouched


def test_a_release_without_a_next_job_claims_nothing(
    world: World,  # noqa: F811
    two_departments: tuple[Caller, Caller],  # noqa: F811
) -> None:
    stats, _ = two_departments
    only = submitted(stats)
    gw = gateway_of(world)
    job = worker.claim_next(gw, "w1")
    assert job is not None and job.id == only
    assert worker.Runner(gw).run(job, None, "w1") is None
    assert "job.started" in entries_of(world, only)  # its own claim's


def test_a_busy_pool_goes_from_job_to_job_through_its_releases(
    world: World,  # noqa: F811
    two_departments: tuple[Caller, Caller],  # noqa: F811
) -> None:
    """The pool's own worker: three jobs queued before it starts, one full claim, then each
    next job claimed with the previous one's end."""
    stats, planning = two_departments
    jobs = [submitted(stats), submitted(planning), submitted(stats)]
    gw = gateway_of(world)
    pool = worker.WorkerPool(gw, size=1)
    pool.start()
    try:
        for job_id in jobs:
            caller = planning if job_id == jobs[1] else stats
            result = caller.get(f"/v1/jobs/{job_id}/result", params={"wait": GUARD_S})
            assert result.status_code == 200, result.text
            assert result.json()["status"] == "released", result.text
    finally:
        pool.stop()
    indexes = [entries_of(world, job_id) for job_id in jobs]
    for before, after in itertools.pairwise(indexes):
        assert after["job.started"] == before["job.released"] + 1
