"""Faults and bombs against the sandbox worker processes (real processes, real DuckDB).

Each test names the defence it checks; removing that defence makes it fail.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import (
    ExecutionCategory,
    ExecutionError,
    Limits,
    QueryTimeout,
    ResourceLimitExceeded,
    TableSource,
)
from sandbox.engines.oslimits import OsLimits
from sandbox.engines.process import LONG_JOB_NICE, ProcessEngine
from tests.adversarial.sandbox_fixtures import COUNT, DATASET, SLOW, hand_built, write_registry


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, TableSource]:
    return write_registry(tmp_path)


@pytest.fixture
def engine() -> Iterator[ProcessEngine]:
    engine = ProcessEngine(Limits(timeout_s=30), spares=0)
    yield engine
    engine.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def run_in_thread(engine: ProcessEngine, *args: object) -> tuple[threading.Thread, list]:
    outcome: list[object] = []

    def target() -> None:
        try:
            outcome.append(engine.run(*args))  # type: ignore[arg-type]
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


def test_jobs_run_in_another_process(engine: ProcessEngine, sources: dict) -> None:
    assert engine.run(COUNT, sources, {}).rows == ((40,),)
    (pid,) = engine.worker_pids()
    assert pid != os.getpid()


def test_a_worker_killed_mid_job_fails_that_job_and_the_next_job_runs(
    engine: ProcessEngine, sources: dict
) -> None:
    thread, outcome = run_in_thread(engine, SLOW, sources, {})
    wait_for(engine.busy_pids)
    (victim,) = engine.busy_pids()
    time.sleep(0.2)
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout=30)
    (error,) = outcome
    assert isinstance(error, ExecutionError)
    assert error.category is ExecutionCategory.WORKER_LOST
    assert engine.run(COUNT, sources, {}).rows == ((40,),)
    assert victim not in engine.worker_pids()


def nice_values(pid: int) -> set[int]:
    """The nice value of every thread of `pid` (field 19 of /proc/PID/task/TID/stat)."""
    values = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            values.add(int(stat.rsplit(")", 1)[1].split()[16]))
    return values


@pytest.mark.slow  # waits out `long_job_s`
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux's /proc")
def test_a_long_job_yields_the_cpu_and_its_worker_is_not_reused(sources: dict) -> None:
    """Noisy neighbour: a call past `long_job_s` runs at nice LONG_JOB_NICE on every thread;
    the next (short) job runs on another worker at the normal priority."""
    engine = ProcessEngine(Limits(timeout_s=30, threads=2), spares=0, long_job_s=2.0)
    try:
        assert engine.run(COUNT, sources, {}).rows == ((40,),)  # short: not demoted, kept
        (short,) = engine.worker_pids()
        assert nice_values(short) == {os.getpriority(os.PRIO_PROCESS, 0)}
        thread, outcome = run_in_thread(engine, SLOW, sources, {})
        wait_for(engine.busy_pids)
        (heavy,) = engine.busy_pids()
        assert heavy == short  # the idle worker took the heavy job
        wait_for(lambda: nice_values(heavy) == {LONG_JOB_NICE})
        os.kill(heavy, signal.SIGKILL)  # end it now (it would run for minutes)
        thread.join(timeout=30)
        (lost,) = outcome
        assert isinstance(lost, ExecutionError)
        assert engine.run(COUNT, sources, {}).rows == ((40,),)
        (fresh,) = engine.worker_pids()
        assert fresh != heavy
        assert nice_values(fresh) == {os.getpriority(os.PRIO_PROCESS, 0)}
    finally:
        engine.close()


SLOWISH = hand_built("SELECT COUNT(*) AS n FROM range(300000000)")


@pytest.mark.skipif(os.geteuid() != 0, reason="raising a priority back needs CAP_SYS_NICE")
def test_a_demoted_worker_gets_its_priority_back_where_the_gateway_may(sources: dict) -> None:
    engine = ProcessEngine(Limits(timeout_s=30), spares=0, long_job_s=0.01)
    try:
        assert engine.run(SLOWISH, sources, {}).rows == ((300_000_000,),)
        (kept,) = engine.worker_pids()
        assert nice_values(kept) == {os.getpriority(os.PRIO_PROCESS, 0)}
    finally:
        engine.close()


def test_a_demoted_worker_is_retired_where_its_priority_cannot_be_raised(
    sources: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.setpriority

    def unprivileged(which: int, who: int, value: int) -> None:
        if value < os.getpriority(which, who):  # what the kernel refuses without CAP_SYS_NICE
            raise PermissionError(1, "Operation not permitted")
        real(which, who, value)

    monkeypatch.setattr(os, "setpriority", unprivileged)
    engine = ProcessEngine(Limits(timeout_s=30), spares=0, long_job_s=0.01)
    try:
        assert engine.run(SLOWISH, sources, {}).rows == ((300_000_000,),)
        assert engine.worker_pids() == ()  # demoted, could not be restored: killed, not kept
    finally:
        engine.close()


@pytest.mark.slow
def test_the_watchdog_kills_a_worker_that_stops_answering(sources: dict) -> None:
    engine = ProcessEngine(Limits(timeout_s=1.0), spares=0, grace_s=1.0)
    try:
        engine.run(COUNT, sources, {})
        (worker,) = engine.worker_pids()
        os.kill(worker, signal.SIGSTOP)  # frozen: DuckDB's own timeout can never fire
        started = time.monotonic()
        with pytest.raises(QueryTimeout):
            engine.run(COUNT, sources, {})
        assert time.monotonic() - started < 10
        wait_for(lambda: not alive(worker))
        assert engine.run(COUNT, sources, {}).rows == ((40,),)
    finally:
        engine.close()


def test_a_time_bomb_is_interrupted_and_the_worker_serves_the_next_job(sources: dict) -> None:
    engine = ProcessEngine(Limits(timeout_s=0.5), spares=0, grace_s=10.0)
    try:
        started = time.monotonic()
        with pytest.raises(QueryTimeout):
            engine.run(SLOW, sources, {})
        assert time.monotonic() - started < 8  # DuckDB's interrupt, well before the watchdog
        assert engine.run(COUNT, sources, {}).rows == ((40,),)
    finally:
        engine.close()


@pytest.mark.slow
def test_the_cpu_limit_kills_a_worker_that_spins_past_its_budget(sources: dict) -> None:
    engine = ProcessEngine(
        Limits(timeout_s=60), spares=0, os_limits=OsLimits(cpu_s=1.0), grace_s=30
    )
    try:
        with pytest.raises(ExecutionError) as caught:
            engine.run(SLOW, sources, {})
        assert caught.value.category is ExecutionCategory.WORKER_LOST
        assert engine.run(COUNT, sources, {}).rows == ((40,),)
    finally:
        engine.close()


def test_a_memory_bomb_fails_with_out_of_memory(sources: dict) -> None:
    engine = ProcessEngine(Limits(timeout_s=60, memory_limit="200MB"), spares=0)
    bomb = hand_built(
        "SELECT COUNT(*) AS n FROM (SELECT DISTINCT range::VARCHAR || 'padding-padding' AS s "
        "FROM range(40000000))"
    )
    try:
        with pytest.raises(ResourceLimitExceeded) as caught:
            engine.run(bomb, sources, {})
        assert caught.value.category is ExecutionCategory.OUT_OF_MEMORY
        assert engine.run(COUNT, sources, {}).rows == ((40,),)
    finally:
        engine.close()


def test_the_address_space_limit_stops_what_the_engine_memory_limit_allows(
    sources: dict,
) -> None:
    # DuckDB may use 8 GB here; the process may map 1.5 GiB (≈0.8 GiB is the baseline).
    engine = ProcessEngine(
        Limits(timeout_s=60, memory_limit="8GB"),
        spares=0,
        os_limits=OsLimits(address_space=int(1.5 * 2**30)),
    )
    bomb = hand_built(
        "SELECT MAX(LEN(l)) AS n FROM (SELECT LIST(range) AS l FROM range(200000000))"
    )
    try:
        with pytest.raises(ExecutionError) as caught:
            engine.run(bomb, sources, {})
        assert caught.value.category in {
            ExecutionCategory.OUT_OF_MEMORY,
            ExecutionCategory.WORKER_LOST,
            ExecutionCategory.INTERNAL,
        }
        assert engine.run(COUNT, sources, {}).rows == ((40,),)
    finally:
        engine.close()


def test_workers_run_under_os_limits(engine: ProcessEngine, sources: dict) -> None:
    limits = engine.worker_limits()
    assert limits["core"] == [0, 0]  # no core dumps: a crash writes no memory (data) to disk
    assert limits["nofile"][0] <= 256
    assert limits["landlock"] >= 1, "this kernel has Landlock; the worker must use it"


def test_a_worker_does_not_inherit_the_gateway_environment(
    engine: ProcessEngine, sources: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INSITU_SECRET_FOR_TEST", "do-not-pass")
    engine.run(COUNT, sources, {})
    (pid,) = engine.worker_pids()
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"INSITU_SECRET_FOR_TEST" not in environ


@pytest.mark.parametrize(
    ("max_rows", "max_bytes", "category"),
    [(39, 8_000_000, ExecutionCategory.ROW_LIMIT), (100, 200, ExecutionCategory.BYTE_LIMIT)],
)
def test_result_caps_hold_across_the_process_boundary(
    sources: dict, max_rows: int, max_bytes: int, category: ExecutionCategory
) -> None:
    engine = ProcessEngine(Limits(max_rows=max_rows, max_bytes=max_bytes), spares=0)
    query = hand_built(f"SELECT enterprise_id AS n FROM {DATASET}")
    try:
        with pytest.raises(ResourceLimitExceeded) as caught:
            engine.run(query, sources, {})
        assert caught.value.category is category
        assert "E1" not in str(caught.value)
    finally:
        engine.close()


@pytest.mark.parametrize(
    "sql",
    [
        f"SELECT CAST(enterprise_id AS INTEGER) AS n FROM {DATASET}",
        f"SELECT CAST(LENGTH(enterprise_id) AS TINYINT) * 127 AS n FROM {DATASET}",
        f"SELECT CAST(capital AS BIGINT) // (LENGTH(enterprise_id) - 2) AS n FROM {DATASET}",
    ],
    ids=["cast", "overflow", "division"],
)
def test_data_errors_come_back_as_one_generic_failure_without_values(
    engine: ProcessEngine, sources: dict, sql: str
) -> None:
    with pytest.raises(ExecutionError) as caught:
        engine.run(hand_built(sql), sources, {})
    assert caught.value.category is ExecutionCategory.DATA
    assert str(caught.value) == "the query failed while running (data)"
    assert caught.value.__cause__ is None and caught.value.__context__ is None


def sandbox_children() -> set[int]:
    """Live sandbox worker processes started by this process (from /proc, starting ones too)."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        mine = int(fields[1]) == os.getpid() and b"sandbox.engines.worker" in cmdline
        if mine and fields[0] != "Z":  # a zombie has exited
            out.add(int(stat.parent.name))
    return out


@pytest.mark.slow
def test_never_more_worker_processes_than_max_workers(sources: dict) -> None:
    """Eight callers at once, spares 1 and max_workers 2: never a third process (starting,
    idle or busy); callers wait for a worker instead, and every job still answers."""
    engine = ProcessEngine(Limits(timeout_s=30), spares=1, max_workers=2, max_jobs=3)
    most = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal most
        while not stop.is_set():
            most = max(most, len(sandbox_children()))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        runs = [run_in_thread(engine, COUNT, sources, {}) for _ in range(8)]
        for thread, _ in runs:
            thread.join(timeout=120)
        assert [outcome[0].rows for _, outcome in runs] == [((40,),)] * 8  # type: ignore[attr-defined]
    finally:
        stop.set()
        watcher.join()
        engine.close()
    assert 1 <= most <= 2
