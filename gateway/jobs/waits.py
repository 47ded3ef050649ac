"""Waiting for a job's end without holding a thread.

A result wait (`GET /v1/jobs/{id}/result?wait=S`, `POST /v1/jobs?wait=S`) is a coroutine: it
sleeps on an asyncio event that the worker's release of *that* job wakes
(`Gateway.jobs_finished`, by job id: other jobs' releases pass it by), looks at
the store now and then for jobs another replica finished, and stops when the client hangs up.
Each look borrows a thread for one short read (and the result, in the same hop, once the job
has ended). A job this replica's worker ended while the wait listened needs no read: the
worker hands over the row and result it committed (`Gateway.handoffs`). A caller may hold
only so many waits at once (`max_waits_per_caller`); one more is answered 429 with
`Retry-After`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from anyio import to_thread

from gateway.auth.principal import Principal
from gateway.context import Gateway
from gateway.errors import TooManyRequests
from gateway.jobs import model
from gateway.jobs.model import TERMINAL, Job, JobStatus
from gateway.store import db

T = TypeVar("T")
Then = Callable[[Job, model.StoredResult | None], T]
RECHECK_S = 0.5  # how often a wait looks at the store for other replicas' releases
MAX_WAIT_S = 300.0


class WaitSlots:
    """How many waits each caller holds open on this gateway."""

    def __init__(self, per_caller: int) -> None:
        self._per_caller = per_caller
        self._held: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def held(self, principal: Principal) -> int:
        with self._lock:
            return self._held[(principal.department, principal.subject)]

    @contextlib.contextmanager
    def hold(self, principal: Principal) -> Iterator[None]:
        key = (principal.department, principal.subject)
        with self._lock:
            if self._held[key] >= self._per_caller:
                raise TooManyRequests(
                    f"you already wait on {self._per_caller} results; "
                    "wait on fewer at once or poll without ?wait",
                    retry_after=1,
                )
            self._held[key] += 1
        try:
            yield
        finally:
            with self._lock:
                self._held[key] -= 1
                if self._held[key] <= 0:
                    del self._held[key]


def load(gw: Gateway, job_id: str) -> tuple[Job, model.StoredResult | None]:
    """The job and its stored result (None until released), in one query."""
    with db.reading(gw.db) as conn:
        return model.load_job_and_result(conn, job_id)


def _look(gw: Gateway, job_id: str, then: Then[T], final: bool) -> tuple[bool, T | None]:
    """One look: (True, `then(job, its stored result)`) once the job has ended, or on the
    `final` look whatever its status; (False, None) while it runs. One query and one thread
    hop for both; no query when this replica's worker handed the job's end over (a terminal
    job's row and result never change, so a handoff is what the store holds)."""
    ended = gw.handoffs.take(job_id)  # this replica's worker ended it: what it committed
    job, stored = ended if ended is not None else load(gw, job_id)
    if final or JobStatus(job.status) in TERMINAL:
        return True, then(job, stored)
    return False, None


async def until_finished(
    gw: Gateway,
    job_id: str,
    wait_s: float,
    *,
    seen: int | None,
    gone: Callable[[], Awaitable[bool]],
    then: Then[T],
) -> T | None:
    """`then(job, stored)` (in a thread, with the look that found it: the job and its stored
    result, None until released) once the job has ended, or with the job as it stands when
    `wait_s` is over; None if the client hung up meanwhile.

    `seen` is `gw.jobs_finished.generation()` from before the caller last saw the job
    unfinished: a release since then (this job's, perhaps, before this wait listened) makes
    the first look immediate, so no release is missed; None: look at once.
    """
    deadline = time.monotonic() + max(0.0, min(wait_s, MAX_WAIT_S))
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()

    def wake() -> None:  # called from the worker thread that released a job
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
            loop.call_soon_threadsafe(woken.set)

    forget = gw.jobs_finished.listen(wake, topic=job_id)  # this job's end, not every job's
    try:
        if seen is None or gw.jobs_finished.generation() != seen:
            woken.set()
        while True:
            remaining = deadline - time.monotonic()
            if remaining > 0 and not woken.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), timeout=min(remaining, RECHECK_S))
            woken.clear()  # before the look: a release after it wakes the next round
            if await gone():
                return None
            final = deadline - time.monotonic() <= 0
            done, value = await to_thread.run_sync(_look, gw, job_id, then, final)
            if done:
                return value
    finally:
        forget()
