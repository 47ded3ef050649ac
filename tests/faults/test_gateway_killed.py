"""kill -9 of a served gateway while jobs are accepted, running and released-but-unread.

After a restart (or on another replica) the running jobs' leases expire and they run again;
nothing is lost, duplicated or stuck past the lease; every receipt verifies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest
import sqlalchemy as sa

from gateway.store import db, schema
from tests.faults._served import LEASE_S, Served, verify, vkeys, wait_terminal
from tests.faults.conftest import check_store

pytestmark = pytest.mark.slow


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper is dead)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def running_in_store(served: Served, ids: list[str]) -> int:
    """How many of `ids` the store holds as running (read while no gateway is up)."""
    engine = db.create_engine(served.settings.resolved_database_url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(schema.jobs)
                    .where(schema.jobs.c.id.in_(ids), schema.jobs.c.status == "running")
                ).scalar_one()
            )
    finally:
        engine.dispose()


def kill_while_a_job_runs(served: Served, ids: list[str]) -> tuple[set[str], set[int]]:
    """Submit five jobs and kill -9 the gateway at a moment with one running and, if the
    timing allows, one released (unread) and one still accepted. The sandbox workers are
    stopped (SIGSTOP) first so that a job seen running cannot finish before the kill."""
    with served.client() as client:
        mine = [served.submit(client) for _ in range(5)]
        ids.extend(mine)
        deadline = time.monotonic() + 60
        seen: set[str] = set()
        while time.monotonic() < deadline:
            seen = {client.get(f"/v1/jobs/{i}").json()["status"] for i in mine}
            if "running" in seen and ("released" in seen or "accepted" not in seen):
                break
            time.sleep(0.02)
        sandbox = served.sandbox_pids()
        for pid in sandbox:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        served.kill9()
    return seen, sandbox


def test_a_killed_gateway_loses_no_job_and_its_running_jobs_are_reclaimed(
    served: Served,
) -> None:
    ids: list[str] = []
    served.start()
    # The job seen running may still finish in the gateway between the look and the kill
    # (its sandbox call done, its release being recorded): then there is nothing to reclaim
    # and the scenario is tried again on the restarted gateway, as an operator's retry.
    for _attempt in range(4):
        seen, sandbox = kill_while_a_job_runs(served, ids)
        assert "running" in seen, seen
        assert sandbox, "the gateway had sandbox workers"
        time.sleep(1.0)
        orphans = [p for p in sandbox if alive(p)]
        assert orphans == [], "sandbox workers outlived their gateway"
        running_at_kill = running_in_store(served, ids)
        killed_at = time.monotonic()
        served.start()
        started_s = time.monotonic() - killed_at
        if running_at_kill:
            break
    assert running_at_kill >= 1, "no attempt killed the gateway with a job running"
    with served.client() as client:
        status = wait_terminal(client, ids, timeout_s=LEASE_S + 60)
        recovered_s = time.monotonic() - killed_at
        receipts = [client.get(f"/v1/jobs/{i}/result").json()["receipt"] for i in ids]
    assert set(status.values()) == {"released"}, status
    for receipt in receipts:
        verify(receipt, vkeys(served.settings))
    events = check_store(served.settings, ids)
    # Every job running at the last kill ran again (earlier kills may add more).
    assert events["job.reclaimed"] >= running_at_kill
    print(f"restart {started_s:.1f} s; {len(ids)} jobs terminal {recovered_s:.1f} s after kill -9")
