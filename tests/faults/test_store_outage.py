"""PostgreSQL stopped and started under load (a private cluster, never the shared server).

During the outage the gateway answers 503 and is not ready; afterwards its workers are alive,
it is ready again, and every job accepted before or after runs to its end exactly once.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import httpx
import pytest

from gateway.settings import Settings
from tests.faults._served import LEASE_S, Served, seed, verify, vkeys, wait_terminal
from tests.faults.conftest import PrivateCluster, check_store

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_workers_survive_a_postgresql_outage_and_every_job_finishes_once(
    private_pg: PrivateCluster, tmp_path: Path, demo_data_dir: Path
) -> None:
    settings = Settings(home=tmp_path / "home", database_url=private_pg.url, workers=2)
    served = Served(settings, seed(settings, demo_data_dir))
    served.start()
    try:
        with served.client() as client:
            ids = [served.submit(client) for _ in range(4)]
            private_pg.ctl("stop", "-m", "fast")  # under load: jobs queued and running
            statuses = []
            for _ in range(3):
                with contextlib.suppress(httpx.HTTPError):
                    statuses.append(client.get("/readyz").status_code)
                    statuses.append(client.post("/v1/jobs", json={"template": "x"}).status_code)
                time.sleep(0.5)
            assert statuses and set(statuses) == {503}, statuses
            private_pg.ctl("start")
            deadline = time.monotonic() + 60
            while client.get("/readyz", timeout=10).status_code != 200:
                assert time.monotonic() < deadline, served.errors()
                time.sleep(0.2)
            ids.append(served.submit(client))  # the workers still take new jobs
            status = wait_terminal(client, ids, timeout_s=LEASE_S + 90)
            receipts = [client.get(f"/v1/jobs/{i}/result").json()["receipt"] for i in ids]
    finally:
        served.stop()
    assert set(status.values()) == {"released"}, status
    for receipt in receipts:
        verify(receipt, vkeys(settings))
    check_store(settings, ids)
