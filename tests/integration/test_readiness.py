"""`/readyz` looks at the workers, the store, the sandbox and the policy; `/healthz` is liveness."""

from __future__ import annotations

import os
import signal
import time

from sandbox.engines.process import ProcessEngine
from tests.integration.conftest import World


def test_readyz_is_ready_with_live_workers_and_not_once_they_are_gone(world: World) -> None:
    ready = world.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {
        "store": True,
        "workers": True,
        "sandbox": True,
        "policy": True,
    }
    world.app.state.pool.stop()
    gone = world.client.get("/readyz")
    assert gone.status_code == 503
    assert "workers" in gone.json()["detail"]
    assert world.client.get("/healthz").status_code == 200  # still alive


def test_sandbox_workers_die_with_the_process_that_started_them(world: World) -> None:
    """PR_SET_PDEATHSIG: a sandbox worker whose parent is killed is killed too (here the
    parent is a forked child that starts one worker and is then SIGKILLed)."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        os.close(read)
        engine = ProcessEngine(spares=0)
        engine.ready()  # starts one worker
        os.write(write, str(engine.worker_pids()[0]).encode())
        time.sleep(60)
        os._exit(0)
    os.close(write)
    pid = int(os.read(read, 32))
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError("the sandbox worker outlived its gateway")


def test_the_sandbox_never_starts_more_workers_than_its_cap() -> None:
    engine = ProcessEngine(spares=2, max_workers=2)
    try:
        assert engine.ready()
        deadline = time.monotonic() + 20
        while len(engine.worker_pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.ready()  # two idle: ready without starting a third
        assert len(engine.worker_pids()) == 2
    finally:
        engine.close()
