"""A job handed to an idle worker at acceptance (issue 13, `gateway.jobs.idle`), on SQLite and
on PostgreSQL: claimed in the transaction that accepts it, as a claim would record it (lease,
`job.started`, the department's turn), then run and released by that worker; never when a job
waits in the queue (it would be overtaken) nor when the department is at its running cap;
a refused submission gives the worker back.

The app runs no worker threads: a test's idle worker is the real `IdleWorkers.wait` on a thread
of its own, and the run is the worker's own `Runner`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from gateway.context import Gateway
from gateway.jobs import worker
from gateway.jobs.model import Job
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


def idle(threads: ThreadPoolExecutor, gw: Gateway, worker_id: str) -> Future[Job | None]:
    """`worker_id` waiting for a job, as a worker thread that found none to claim."""
    before = gw.idle_workers.idle()
    found = threads.submit(gw.idle_workers.wait, worker_id, gw.idle_workers.generation(), GUARD_S)
    deadline = time.monotonic() + GUARD_S
    while gw.idle_workers.idle() == before:
        assert time.monotonic() < deadline, "the worker never went idle"
        time.sleep(0.001)
    return found


def status_of(caller: Caller, job_id: str) -> str:
    response = caller.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


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
    job = waiting.result(GUARD_S)
    assert job is not None and job.id == job_id
    assert (job.status, job.lease_owner, job.worker, job.attempts) == (
        "running",
        "w-idle",
        "w-idle",
        1,
    )
    assert job.lease_expires_at is not None and job.started_at == job.created_at
    assert status_of(stats, job_id) == "running"  # the row as the store holds it
    assert worker.claim_next(gw, "w2") is None  # nothing was left in the queue
    entries = [e for e in audit_types(world) if e["target"] == f"job:{job_id}"]
    assert [e["type"] for e in entries] == ["job.accepted", "job.started", "job.read"]
    assert entries[1]["details"] == {"job": job_id, "worker": "w-idle"}
    assert entries[1]["actor"] == entries[0]["actor"]
    worker.Runner(gw).run(job)  # the worker's run, as after a claim
    result = stats.get(f"/v1/jobs/{job_id}/result")
    assert result.status_code == 200 and result.json()["status"] == "released", result.text
    assert result.json()["rows"]


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
    assert handed is not None and handed.id == first
    waiting = idle(threads, gw, "w2")
    second = submitted(stats)
    assert waiting.result(GUARD_S) is None
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
    pool = worker.WorkerPool(gw, size=1, poll_s=GUARD_S)  # polls too rarely to find it itself
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
