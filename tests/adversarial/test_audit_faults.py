# ruff: noqa: F811 - the integration fixtures are imported by name and used as parameters
"""Faults the audit log must survive or refuse: a writer killed by SIGKILL mid-burst, a store
that cannot write (disk full, database gone), durability settings that could lose entries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from audit import (
    Signer,
    SqlAuditLog,
    leaf_hash,
    open_checkpoint,
    verify_bundle,
    verify_consistency,
    verify_receipt,
)
from gateway.errors import Unavailable
from gateway.settings import Settings
from gateway.store import db
from gateway.wiring import build_gateway
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
from tests.integration.test_job_path import SUBMIT, run_job

ORIGIN = "insitu.test/audit"
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_kill_9_during_a_burst_leaves_a_valid_log_and_valid_receipts(
    database_url: str, tmp_path: Path
) -> None:
    signer = Signer.generate(ORIGIN)
    key = tmp_path / "audit.pem"
    key.write_bytes(signer.to_pem())
    writer = subprocess.Popen(
        [sys.executable, "-m", "tests.adversarial._burst_writer", database_url, ORIGIN, str(key)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    receipts: list[dict[str, Any]] = []
    assert writer.stdout is not None
    deadline = time.monotonic() + 120
    while len(receipts) < 300 and time.monotonic() < deadline:
        line = writer.stdout.readline()
        if not line:
            break
        receipts.append(json.loads(line))
    os.kill(writer.pid, signal.SIGKILL)  # mid-burst: 16 threads are appending
    writer.wait()
    writer.stdout.close()
    assert len(receipts) >= 300, "the writer did not get going"

    engine = db.create_engine(database_url)
    log = SqlAuditLog(origin=ORIGIN, signer=signer)
    try:
        with engine.begin() as conn:
            log.checkpoint(conn)  # restart: sign the recovered head
            report = log.verify(conn)
        assert report.size > max(r["audit_index"] for r in receipts)
        bundle = tmp_path / "after-crash.jsonl"
        with db.reading(engine) as conn:
            log.export_bundle(conn, bundle)
            now = open_checkpoint(log.latest_checkpoint(conn) or "", [log.verifier], ORIGIN)
            for receipt in receipts:
                checked = verify_receipt(receipt, [signer.verifier()])
                index, size = checked.index, checked.checkpoint.size
                assert leaf_hash(log.entry(conn, index)).hex() == receipt["leaf_hash"]
                proof = log.consistency_proof(conn, size, now.size)
                verify_consistency(size, now.size, proof, checked.checkpoint.root, now.root)
        assert verify_bundle(bundle, vkeys=[signer.verifier().vkey]).size == report.size
    finally:
        engine.dispose()


def _gateway(world: World) -> Any:
    return world.app.state.gateway


@pytest.mark.parametrize("migrated_database_url", ["sqlite"], indirect=True)
@pytest.mark.slow
def test_a_store_that_cannot_write_fails_jobs_with_503_and_releases_nothing(
    world: World, analyst: Caller, approved_template: dict[str, Any]
) -> None:
    gw = _gateway(world)
    body = run_job(analyst)
    job_id = body["job"]["id"]

    @sa.event.listens_for(gw.db, "connect")
    def _full(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA query_only=ON")  # every write fails, as on a full disk

    gw.db.dispose()  # every new connection is one that cannot write
    try:
        read = analyst.get(f"/v1/jobs/{job_id}/result")
        assert read.status_code == 503, read.text
        assert "rows" not in read.json() and "receipt" not in read.json()
        submitted = analyst.submit(SUBMIT)
        assert submitted.status_code == 503, submitted.text
    finally:
        sa.event.remove(gw.db, "connect", _full)
        gw.db.dispose()
    with gw.db.begin() as conn:
        gw.audit.log.checkpoint(conn)
        gw.audit.log.verify(conn)
    assert analyst.get(f"/v1/jobs/{job_id}/result").status_code == 200


@pytest.mark.parametrize("migrated_database_url", ["postgresql"], indirect=True)
def test_a_database_gone_fails_jobs_with_503_and_releases_nothing(
    world: World, analyst: Caller, approved_template: dict[str, Any], pg_admin_url: str
) -> None:
    gw = _gateway(world)
    body = run_job(analyst)
    name = gw.db.url.database
    admin = sa.create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")

    def set_allowed(allowed: bool) -> None:
        with admin.connect() as conn:
            conn.execute(
                sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}')
            )
            if not allowed:
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :n AND pid <> pg_backend_pid()"
                    ),
                    {"n": name},
                )

    set_allowed(False)
    try:
        read = analyst.get(f"/v1/jobs/{body['job']['id']}/result")
        assert read.status_code == 503, read.text
        assert "rows" not in read.json()
        assert analyst.submit(SUBMIT).status_code == 503
    finally:
        set_allowed(True)
        admin.dispose()
    gw.db.dispose()
    with gw.db.begin() as conn:
        gw.audit.log.verify(conn)
    assert analyst.get(f"/v1/jobs/{body['job']['id']}/result").status_code == 200


def test_start_up_refuses_sqlite_without_synchronous_full(sqlite_url: str) -> None:
    engine = sa.create_engine(sqlite_url)

    @sa.event.listens_for(engine, "connect")
    def _normal(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    with pytest.raises(Unavailable, match="synchronous=FULL"):
        db.check_durability(engine)
    engine.dispose()


def test_start_up_refuses_postgresql_without_synchronous_commit(
    postgres_url: str, pg_admin_url: str, tmp_path: Path
) -> None:
    from gateway import home

    name = sa.make_url(postgres_url).database
    admin = sa.create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    admin.dispose()
    settings = Settings(home=tmp_path / "home", database_url=postgres_url)
    home.init_home(settings)
    with pytest.raises(Unavailable, match="synchronous_commit"):
        build_gateway(settings)
