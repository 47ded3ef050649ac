"""Which idle sandbox worker a job gets: the one whose last job read the same sources.

A worker keeps a locked database over the sources of its last job (`sandbox.engines.duckdb`);
two kinds of job alternating on one pool would otherwise each take the worker holding the
other's database and make a new one on the job's path.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import Limits, TableSource
from sandbox.engines.process import HANDOVER_JOBS, ProcessEngine
from tests.adversarial.sandbox_fixtures import COUNT, write_registry


@pytest.fixture
def engine() -> Iterator[ProcessEngine]:
    engine = ProcessEngine(Limits(timeout_s=30), spares=0, max_workers=2)
    yield engine
    engine.close()


def test_a_job_goes_to_the_idle_worker_that_last_read_its_sources(
    engine: ProcessEngine, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a: dict[str, TableSource] = write_registry(tmp_path / "a")
    b: dict[str, TableSource] = write_registry(tmp_path / "b")  # same dataset, another file
    assert engine.run(COUNT, a, {}).rows == ((40,),)
    first = engine._take()  # the worker that read `a`, held busy
    assert engine.run(COUNT, b, {}).rows == ((40,),)  # so a second worker reads `b`
    engine._give_back(first)  # the last returned: a job without a preference would take it
    (second,) = [w for w in engine._idle if w is not first]
    assert (first.jobs, second.jobs) == (1, 1)
    engine.run(COUNT, b, {})
    engine.run(COUNT, a, {})
    assert (first.jobs, second.jobs) == (2, 2)


def test_without_a_match_the_last_returned_worker_is_taken(
    engine: ProcessEngine, tmp_path: Path
) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    a, b, c = (write_registry(tmp_path / name) for name in ("a", "b", "c"))
    engine.run(COUNT, a, {})
    first = engine._take()
    engine.run(COUNT, b, {})
    engine._give_back(first)  # idle: the worker that read `b`, then the one that read `a`
    engine.run(COUNT, c, {})  # neither read `c`: the last returned
    assert first.jobs == 2 and first.sources is not None
    assert first.sources[0][2] == str(tmp_path / "c" / "registry.parquet")


def test_a_worker_about_to_retire_has_its_successor_prepared(tmp_path: Path) -> None:
    """`HANDOVER_JOBS` jobs before a worker retires (`max_jobs`), a successor is started with
    the database over its last job's sources made: the job after the retirement goes there."""
    engine = ProcessEngine(Limits(timeout_s=30), spares=1, max_workers=3, max_jobs=10)
    try:
        a: dict[str, TableSource] = write_registry(tmp_path)
        engine.run(COUNT, a, {})
        (first,) = [w for w in [*engine._idle] if w.jobs == 1]
        assert 10 - HANDOVER_JOBS == 2
        engine.run(COUNT, a, {})  # its second job: 8 short of retiring
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the filler starts and prepares it meanwhile
            with engine._lock:
                ready = [w for w in engine._idle if w is not first and w.sources == first.sources]
            if ready:
                break
            time.sleep(0.05)
        (successor,) = ready
        assert successor.jobs == 0 and len(engine.worker_pids()) == 3  # the cap holds
        # It holds the database already: being asked to make it again, it makes nothing.
        reply = successor.call({"op": "prepare", "sources": first.mounted}, time.monotonic() + 30)
        assert reply == {"ok": True, "made": False}
        for _ in range(8):  # the worker's last jobs (it is preferred: the last returned)
            engine.run(COUNT, a, {})
        assert first.jobs == 10 and not first.alive()
        assert engine.run(COUNT, a, {}).rows == ((40,),)
        assert successor.jobs == 1
    finally:
        engine.close()


def test_a_worker_prepares_nothing_from_a_bad_message(engine: ProcessEngine) -> None:
    worker = engine._take()
    try:
        reply = worker.call({"op": "prepare", "sources": [{"nope": 1}]}, time.monotonic() + 30)
        assert reply["ok"] is False and set(reply["error"]) <= {"type", "category", "message"}
    finally:
        engine._give_back(worker)
