"""A full disk under a SQLite store (a small tmpfs mounted for the test, where allowed).

While the disk is full the gateway is not ready and refuses work with 503; nothing is released
without its audit entry. Once space is back, every job accepted runs to its end exactly once.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.settings import Settings
from tests.conftest import IN_CI
from tests.faults._served import (
    LEASE_S,
    SUBMIT,
    Served,
    seed,
    verify,
    vkeys,
    wait_terminal,
)
from tests.faults.conftest import check_store

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
        check=False,
        capture_output=True,
    )
    if done.returncode != 0:
        reason = "cannot mount a small tmpfs here (needs root and CAP_SYS_ADMIN)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


def fill(disk: Path) -> Path:
    """Fill the disk up to its last byte; return the filler to delete later."""
    filler = disk / "filler"
    with filler.open("wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
            out.flush()
            os.fsync(out.fileno())
    return filler


def test_a_full_disk_refuses_work_and_loses_nothing_once_space_is_back(
    small_disk: Path, tmp_path: Path, demo_data_dir: Path
) -> None:
    url = f"sqlite:///{small_disk / 'insitu.db'}"
    settings = Settings(home=tmp_path / "home", database_url=url, workers=2)
    served = Served(settings, seed(settings, demo_data_dir))
    served.start()
    try:
        with served.client() as client:
            ids = [served.submit(client) for _ in range(2)]
            filler = fill(small_disk)
            seen = []
            for _ in range(3):
                with contextlib.suppress(httpx.HTTPError):
                    submitted = client.post(
                        "/v1/jobs", json={**SUBMIT, "purposes": served.purposes}
                    )
                    seen.append(submitted.status_code)
                    if submitted.status_code == 202:
                        ids.append(submitted.json()["id"])
                    seen.append(client.get("/readyz").status_code)
                time.sleep(0.3)
            assert 503 in seen, seen
            assert 500 not in seen, seen
            filler.unlink()
            deadline = time.monotonic() + 60
            while client.get("/readyz", timeout=10).status_code != 200:
                assert time.monotonic() < deadline, served.errors()
                time.sleep(0.2)
            ids.append(served.submit(client))
            status = wait_terminal(client, ids, timeout_s=LEASE_S + 90)
            receipts = [client.get(f"/v1/jobs/{i}/result").json() for i in ids]
    finally:
        served.stop()
    assert set(status.values()) <= {"released", "failed"}, status
    for body in receipts:
        if body.get("status") == "released":
            verify(body["receipt"], vkeys(settings))
    check_store(settings, ids)
