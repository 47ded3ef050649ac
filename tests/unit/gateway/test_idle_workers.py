"""Idle workers of a replica (`gateway.jobs.idle`): a worker waiting for a job is woken by a
queued job, handed a job its submission claimed for it, or returned to the queue; never
lost between its look at the queue and its wait."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from gateway.jobs import idle
from gateway.jobs.idle import IdleWorkers
from gateway.jobs.model import Claimed
from tests.unit.gateway.test_signal import ended

GUARD_S = 10.0  # only stops a broken test from hanging


def a_job(job_id: str = "j1") -> Claimed:
    """A job as a submission hands it over: running, leased to the worker it was given to,
    with the catalogue's version its transaction read."""
    return Claimed(dataclasses.replace(ended(job_id), status="running", lease_owner="w1"), 7)


def waiting(
    pool: ThreadPoolExecutor, workers: IdleWorkers, worker_id: str, n: int = 1
) -> Future[Claimed | None]:
    """`worker_id` waiting idle (the `n`-th idle worker) once this returns."""
    since = workers.generation()
    future = pool.submit(workers.wait, worker_id, since, GUARD_S)
    deadline = time.monotonic() + GUARD_S
    while workers.idle() < n:
        assert time.monotonic() < deadline, "the worker never went idle"
        time.sleep(0.001)
    return future


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


def test_a_taken_worker_is_given_the_job(pool: ThreadPoolExecutor) -> None:
    workers = IdleWorkers()
    future = waiting(pool, workers, "w1")
    slot = workers.take()
    assert slot is not None and slot.worker_id == "w1"
    assert workers.take() is None  # taken: no other submission gets it
    job = a_job()
    assert workers.give(slot, job)
    assert future.result(GUARD_S) is job
    assert workers.idle() == 0


def test_a_worker_put_back_looks_at_the_queue(pool: ThreadPoolExecutor) -> None:
    workers = IdleWorkers()
    future = waiting(pool, workers, "w1")
    slot = workers.take()
    assert slot is not None
    workers.put_back(slot)
    assert future.result(GUARD_S) is None
    assert not workers.give(slot, a_job())  # too late: the worker left


def test_a_queued_job_wakes_every_idle_worker(pool: ThreadPoolExecutor) -> None:
    workers = IdleWorkers()
    first = waiting(pool, workers, "w1", 1)
    second = waiting(pool, workers, "w2", 2)
    workers.wake()
    assert first.result(GUARD_S) is None and second.result(GUARD_S) is None
    assert workers.idle() == 0 and workers.take() is None


def test_a_wake_between_the_look_and_the_wait_is_not_lost() -> None:
    workers = IdleWorkers()
    since = workers.generation()  # read before the worker looks at the queue
    workers.wake()  # a job queued while it looked
    started = time.monotonic()
    assert workers.wait("w1", since, GUARD_S) is None
    assert time.monotonic() - started < GUARD_S / 2  # returned at once, not at the time-out
    assert workers.idle() == 0


def test_the_worker_idle_longest_is_taken_first(pool: ThreadPoolExecutor) -> None:
    workers = IdleWorkers()
    futures = [waiting(pool, workers, f"w{n}", n) for n in (1, 2)]
    first, second = workers.take(), workers.take()
    assert first is not None and second is not None
    assert (first.worker_id, second.worker_id) == ("w1", "w2")
    for slot in (first, second):
        workers.put_back(slot)
    assert [f.result(GUARD_S) for f in futures] == [None, None]


def test_a_worker_stops_waiting_on_a_submission_that_hangs(
    pool: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(idle, "TAKEN_WAIT_S", 0.05)
    workers = IdleWorkers()
    future = waiting(pool, workers, "w1")
    slot = workers.take()
    assert slot is not None
    assert future.result(GUARD_S) is None  # gave up on the taken slot
    assert not workers.give(slot, a_job())  # the submission learns the worker is gone


def test_an_idle_worker_times_out_without_a_job() -> None:
    workers = IdleWorkers()
    assert workers.wait("w1", workers.generation(), 0.01) is None
    assert workers.idle() == 0


def test_wait_is_thread_safe_under_many_submissions(pool: ThreadPoolExecutor) -> None:
    """Every job given reaches exactly one worker; every worker taken is given or returned."""
    workers = IdleWorkers()
    given: list[str] = []
    lock = threading.Lock()

    def worker(worker_id: str) -> None:
        for _ in range(50):
            claimed = workers.wait(worker_id, workers.generation(), 0.01)
            if claimed is not None:
                with lock:
                    given.append(claimed.job.id)

    handed = []
    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for n in range(200):
        slot = workers.take()
        if slot is None:
            time.sleep(0.0005)
            continue
        if n % 2:
            workers.put_back(slot)
        elif workers.give(slot, a_job(f"j{n}")):
            handed.append(f"j{n}")
    for thread in threads:
        thread.join(GUARD_S)
    assert sorted(given) == sorted(handed)
