"""`waits.until_finished`: a wait misses no release, looks and finishes in one thread hop,
and gives up only at its deadline or when the client is gone.

The store is stood in for by `waits.load` (a job's status as a list of looks would see it);
the re-check interval is an hour, so a wait that missed a release would hang: the guard
timeout (not a timing assertion) turns that into a failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.context import Handoffs, Signal
from gateway.jobs import waits

GUARD_S = 10.0


class Store:
    """The job's status as each look finds it, and how many looks there were."""

    def __init__(self, *statuses: str) -> None:
        self.statuses = list(statuses)
        self.looks = 0

    def load(self, _gw: Any, job_id: str) -> Any:
        self.looks += 1
        status = self.statuses[min(self.looks, len(self.statuses)) - 1]
        return SimpleNamespace(id=job_id, status=status), None


@pytest.fixture
def gw(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setattr(waits, "RECHECK_S", 3600.0)
    yield SimpleNamespace(jobs_finished=Signal(), handoffs=Handoffs())


def wait(
    gw: Any,
    seen: int | None,
    wait_s: float = 1800,
    *,
    gone: bool = False,
    meanwhile: Callable[[], Awaitable[None]] | None = None,
) -> Any:
    """The wait's outcome (`then`: the job's status), `meanwhile` running beside it."""

    async def client_gone() -> bool:
        return gone

    async def run() -> Any:
        beside = asyncio.create_task(meanwhile()) if meanwhile is not None else None
        found = await waits.until_finished(
            gw, "job-1", wait_s, seen=seen, gone=client_gone, then=lambda job, _stored: job.status
        )
        if beside is not None:
            await beside
        return found

    return asyncio.run(asyncio.wait_for(run(), GUARD_S))


def test_a_release_before_the_wait_listened_is_not_missed(
    gw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store("released")
    monkeypatch.setattr(waits, "load", store.load)
    seen = gw.jobs_finished.generation()
    gw.jobs_finished.notify("job-1")  # released between the caller's look and the wait
    assert wait(gw, seen) == "released"
    assert store.looks == 1


def test_without_a_generation_the_first_look_is_at_once(
    gw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store("released")  # an idempotent replay of a job that ended long ago
    monkeypatch.setattr(waits, "load", store.load)
    assert wait(gw, None) == "released"


def test_a_release_wakes_the_wait_which_finishes_in_the_look_that_found_it(
    gw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store("running", "released")
    monkeypatch.setattr(waits, "load", store.load)
    seen = gw.jobs_finished.generation()
    gw.jobs_finished.notify("another-job")  # generation moved: one look, still running

    async def release_after_the_first_look() -> None:
        while store.looks < 1:
            await asyncio.sleep(0.01)
        gw.jobs_finished.notify("job-1")

    assert wait(gw, seen, meanwhile=release_after_the_first_look) == "released"
    assert store.looks == 2


def test_at_the_deadline_the_job_as_it_stands_and_a_gone_client_gets_nothing(
    gw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store("running")
    monkeypatch.setattr(waits, "load", store.load)
    seen = gw.jobs_finished.generation()
    assert wait(gw, seen, wait_s=0.05) == "running"  # the final look, whatever the status
    gw.jobs_finished.notify("job-1")
    assert wait(gw, seen, gone=True) is None
