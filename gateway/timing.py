"""Per-stage timers on the job path, off by default.

`stage("sandbox")` times a block with `time.perf_counter` and adds the duration to that stage's
samples; while recording is off (the default) it costs one attribute check. `bench e2e` turns
it on, runs jobs and reads the medians: where each millisecond of one job goes (HTTP, token,
admission, store, queue, sandbox, disclosure, audit, receipt). Nothing in the gateway reads the
samples; they never leave the process.

Stages, in the order a job meets them:

| stage | what is timed |
|---|---|
| token | the bearer token's verification (signature, claims) |
| submit | the whole submission use case (admission = this less `store:submit`) |
| admission | the worker's reads and admission decision again, before the run |
| store:submit, store:release | the job's transactions: accepted (row, audit entry), released |
| queue | from the job row's creation to a worker's claim (less `store:submit`: waiting) |
| sandbox | the engine run (a sandbox worker process) including its auxiliary queries |
| disclosure | disclosure control and the release history (differencing) |
| audit | durable audit writes the caller waits for (`result.read`) |
| receipt | the receipt: entry, inclusion proof, checkpoint |
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

STAGES = (
    "token",
    "submit",
    "store:submit",
    "admission",
    "store:release",
    "queue",
    "sandbox",
    "disclosure",
    "audit",
    "receipt",
)


class Recorder:
    """Samples (seconds) per stage name; thread-safe, off until `enable()`."""

    def __init__(self) -> None:
        self.on = False
        self._lock = threading.Lock()
        self._samples: dict[str, list[float]] = {}

    def enable(self) -> None:
        self.reset()
        self.on = True

    def disable(self) -> None:
        self.on = False

    def reset(self) -> None:
        with self._lock:
            self._samples.clear()

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self._samples.setdefault(name, []).append(seconds)

    def since_time(self, name: str, then: datetime) -> None:
        """Add the wall-clock time since `then` (an aware datetime) to stage `name`."""
        if self.on:
            self.add(name, (datetime.now(UTC) - then).total_seconds())

    def samples(self) -> dict[str, list[float]]:
        with self._lock:
            return {name: list(values) for name, values in self._samples.items()}


RECORDER = Recorder()


def start() -> float:
    """Now, when recording is on (else 0.0); pair with `done` where a `with` would not fit."""
    return time.perf_counter() if RECORDER.on else 0.0


def done(name: str, started: float) -> None:
    """Add the time since `start()` to stage `name`."""
    if RECORDER.on and started:
        RECORDER.add(name, time.perf_counter() - started)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time the block as `name` when recording is on."""
    if not RECORDER.on:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        RECORDER.add(name, time.perf_counter() - start)
