"""A job whose sandbox worker dies fails cleanly through the real app; the next one runs."""

# The app fixtures of tests/integration are imported, so pytest sees them here too.
# ruff: noqa: F811

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any

import pytest

from sandbox.engines.process import ProcessEngine
from tests.integration.conftest import (  # noqa: F401 - fixtures
    Caller,
    World,
    analyst,
    approved_template,
    demo_data_dir,
    owners,
    registered,
    world,
)
from tests.integration.test_job_path import SUBMIT


def submit(analyst: Caller) -> dict[str, Any]:
    submitted = analyst.submit(SUBMIT)
    assert submitted.status_code == 202, submitted.text
    return dict(submitted.json())


@pytest.mark.slow
def test_a_job_whose_worker_is_killed_fails_and_the_next_job_is_released(
    world: World, analyst: Caller, approved_template: dict[str, Any]
) -> None:
    engine = world.app.state.gateway.engine
    assert isinstance(engine, ProcessEngine)  # process isolation is the default
    first = analyst.get(f"/v1/jobs/{submit(analyst)['id']}/result", params={"wait": 60})
    assert first.json()["status"] == "released"
    frozen = engine.worker_pids()
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)  # the next job lands on a frozen worker
    job = submit(analyst)
    try:
        deadline = time.monotonic() + 30
        while not set(engine.busy_pids()) & set(frozen) and time.monotonic() < deadline:
            time.sleep(0.01)
        for pid in set(engine.busy_pids()) & set(frozen):
            os.kill(pid, signal.SIGKILL)
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    failed = analyst.get(f"/v1/jobs/{job['id']}/result", params={"wait": 60})
    status = analyst.get(f"/v1/jobs/{job['id']}").json()
    assert status["status"] == "failed", failed.text
    assert "worker_lost" in status["error"]
    again = analyst.get(f"/v1/jobs/{submit(analyst)['id']}/result", params={"wait": 60})
    assert again.json()["status"] == "released"
