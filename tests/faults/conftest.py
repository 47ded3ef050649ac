"""Fixtures of the fault suite: a seeded home and a served gateway on it (see `_served`)."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from audit.store import entries_table
from gateway import home
from gateway.settings import Settings
from gateway.store import db, schema
from tests.conftest import IN_CI
from tests.faults._served import Served, free_port, seed
from tests.integration.conftest import demo_data_dir  # noqa: F401 - a fixture


@pytest.fixture
def served(tmp_path: Path, migrated_database_url: str, demo_data_dir: Path) -> Iterator[Served]:  # noqa: F811
    settings = Settings(home=tmp_path / "home", database_url=migrated_database_url, workers=2)
    gateway = Served(settings, seed(settings, demo_data_dir))
    try:
        yield gateway
    finally:
        gateway.stop()


def check_store(settings: Settings, job_ids: list[str]) -> Counter[str]:
    """After a fault: every job there once and finished once, no job left running or
    accepted, results only for released jobs, no reservation left open, the log verifies.
    Returns the count of each job event type."""
    engine = db.create_engine(settings.resolved_database_url)
    try:
        with engine.connect() as conn:
            jobs = {r.id: r for r in conn.execute(sa.select(schema.jobs))}
            results = set(conn.execute(sa.select(schema.job_results.c.job_id)).scalars())
            reserved = conn.execute(
                sa.select(sa.func.count())
                .select_from(schema.budget_reservations)
                .where(schema.budget_reservations.c.status == "reserved")
            ).scalar()
            bodies = [
                json.loads(bytes(b))
                for b in conn.execute(sa.select(entries_table.c.body)).scalars()
            ]
        with engine.begin() as conn:
            trail = home.open_trail(settings)
            trail.log.checkpoint(conn)
            trail.log.verify(conn)
    finally:
        engine.dispose()
    assert set(job_ids) <= set(jobs), "a job accepted with 202 was lost"
    assert {j.status for j in jobs.values()} <= {"released", "suppressed", "failed"}
    assert results == {i for i, j in jobs.items() if j.status == "released"}
    assert reserved == 0
    events: Counter[str] = Counter()
    for job_id in jobs:
        mine = Counter(b["type"] for b in bodies if b.get("target") == f"job:{job_id}")
        assert mine["job.accepted"] == 1, (job_id, mine)
        ends = mine["job.released"] + mine["job.suppressed"] + mine["job.failed"]
        assert ends == 1, (job_id, mine)  # finished exactly once
        events.update(mine)
    return events


@dataclass
class PrivateCluster:
    """A PostgreSQL cluster of this test alone (never the shared server): initdb and pg_ctl
    run as `nobody` (PostgreSQL refuses root) on a free port, in a directory of its own."""

    data: Path
    port: int

    def ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        subprocess.run(
            [
                *(RUNUSER, "-u", "nobody", "--", PG_CTL, "-D", str(self.data), "-w", "-t", "60"),
                *("-o", options, "-l", str(self.data / "log"), *args),
            ],
            check=True,
            capture_output=True,
            timeout=90,
        )

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/insitu"


RUNUSER, INITDB, PG_CTL = (shutil.which(n) or "" for n in ("runuser", "initdb", "pg_ctl"))


@pytest.fixture
def private_pg() -> Iterator[PrivateCluster]:
    if not (RUNUSER and INITDB and PG_CTL) or os.geteuid() != 0:
        reason = "needs root, runuser, initdb and pg_ctl to start a private PostgreSQL cluster"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    data = Path(tempfile.mkdtemp(prefix="insitu-pg-"))
    os.chown(data, pwd.getpwnam("nobody").pw_uid, -1)
    cluster = PrivateCluster(data, free_port())
    subprocess.run(
        [
            *(RUNUSER, "-u", "nobody", "--", INITDB, "-D", str(data), "-U", "postgres"),
            *("-A", "trust", "--no-sync", "--no-instructions"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    cluster.ctl("start")
    try:
        admin = sa.create_engine(
            cluster.url.replace("/insitu", "/postgres"), isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as conn:
            conn.execute(sa.text("CREATE DATABASE insitu"))
        admin.dispose()
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            cluster.ctl("stop", "-m", "immediate")
        shutil.rmtree(data, ignore_errors=True)
