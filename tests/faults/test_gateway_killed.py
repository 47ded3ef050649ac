"""kill -9 of a served gateway while jobs are accepted, running and released-but-unread.

After a restart (or on another replica) the running jobs' leases expire and they run again;
nothing is lost, duplicated or stuck past the lease; every receipt verifies.
"""

from __future__ import annotations

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


def kill_while_a_job_runs(served: Served) -> tuple[list[str], set[str], set[int]]:
    """Five jobs, the gateway killed with -9 while one is surely running, one released but
    unread and the rest running or still accepted.

    The first job runs to its release (which also resolves the template's `values_from`
    domain, a sandbox call made at submission). Then every sandbox worker — all idle — is
    stopped (SIGSTOP): the jobs sent to them stay running until the kill."""
    with served.client() as client:
        first = served.submit(client)
        wait_terminal(client, [first], timeout_s=60)
        idle = served.sandbox_pids()
        assert idle, "no sandbox worker was started"
        for pid in idle:
            os.kill(pid, signal.SIGSTOP)
        ids = [first, *(served.submit(client) for _ in range(4))]
        deadline = time.monotonic() + 60
        seen: set[str] = set()
        while time.monotonic() < deadline:
            seen = {client.get(f"/v1/jobs/{i}").json()["status"] for i in ids}
            if "running" in seen and ("released" in seen or "accepted" not in seen):
                break
            time.sleep(0.02)
        sandbox = served.sandbox_pids()
        served.kill9()
    return ids, seen, sandbox


def test_a_killed_gateway_loses_no_job_and_its_running_jobs_are_reclaimed(
    served: Served,
) -> None:
    served.start()
    ids, seen, sandbox = kill_while_a_job_runs(served)
    assert "running" in seen, seen
    assert sandbox, "the gateway had sandbox workers"
    time.sleep(1.0)
    orphans = [p for p in sandbox if alive(p)]
    assert orphans == [], "sandbox workers outlived their gateway (stopped ones included)"
    running_at_kill = running_in_store(served, ids)
    assert running_at_kill >= 1, "the job on the stopped sandbox worker was running"
    killed_at = time.monotonic()
    served.start()
    started_s = time.monotonic() - killed_at
    with served.client() as client:
        status = wait_terminal(client, ids, timeout_s=LEASE_S + 60)
        recovered_s = time.monotonic() - killed_at
        receipts = [client.get(f"/v1/jobs/{i}/result").json()["receipt"] for i in ids]
    assert set(status.values()) == {"released"}, status
    for receipt in receipts:
        verify(receipt, vkeys(served.settings))
    events = check_store(served.settings, ids)
    assert events["job.reclaimed"] >= running_at_kill  # every job running at the kill ran again
    print(f"restart {started_s:.1f} s; {len(ids)} jobs terminal {recovered_s:.1f} s after kill -9")
