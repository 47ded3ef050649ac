"""Backup under load, then the restore drill: a restored log behind the checkpoint the gateway
published refuses to serve until the loss is acknowledged; then receipts handed out before the
backup verify against the restored home and those handed out after are reported lost."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from gateway.settings import Settings
from tests.faults._served import ROOT, Served, verify, vkeys, wait_terminal
from tests.faults.conftest import check_store

pytestmark = pytest.mark.slow


def insitu(*args: str, database_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin:/usr/local/bin"}
    if database_url is not None:
        env["INSITU_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def receipt_of(client: httpx.Client, job_id: str, path: Path) -> Path:
    body = client.get(f"/v1/jobs/{job_id}/result", params={"wait": 60}).json()
    path.write_text(json.dumps(body))
    return path


@pytest.fixture
def restore_url(served: Served, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Where the restore goes: the new home's own SQLite file, or a second, empty PostgreSQL
    database (pg_restore) when the served store is PostgreSQL."""
    url = served.settings.database_url or ""
    if not url.startswith("postgresql"):
        yield None
        return
    admin = sa.create_engine(request.getfixturevalue("pg_admin_url"), isolation_level="AUTOCOMMIT")
    name = f"insitu_r_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_backup_under_load_then_restore_detects_the_rollback(
    served: Served, tmp_path: Path, restore_url: str | None
) -> None:
    served.start()
    url = served.settings.database_url
    backup = tmp_path / "backup"
    with served.client() as client:
        before = [served.submit(client)]
        wait_terminal(client, before, timeout_s=120)
        load = [served.submit(client) for _ in range(2)]  # running while the backup is taken
        done = insitu("backup", str(backup), "--home", str(served.settings.home), database_url=url)
        assert done.returncode == 0, done.stderr
        assert "NOT encrypted" in done.stderr
        after = [served.submit(client)]
        wait_terminal(client, load + after, timeout_s=120)
        old = {i: receipt_of(client, i, tmp_path / f"{i}.json") for i in before + after}
    served.stop()
    check_store(served.settings, before + load + after)
    last = served.settings.home / "audit" / "last-checkpoint"
    assert last.is_file()

    new_home = tmp_path / "restored"
    done = insitu(
        "restore",
        *(str(backup), "--home", str(new_home), "--checkpoint", str(last)),
        database_url=restore_url,
    )
    assert done.returncode == 0, done.stderr
    for source in served.settings.data_dir.rglob("*.parquet"):  # the data stays home: copied
        target = new_home / "data" / source.relative_to(served.settings.data_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())

    restored = Served(Settings(home=new_home, database_url=restore_url), served.purposes)
    refused = restored.start(wait=False)
    assert refused.wait(timeout=120) == 1
    message = restored.errors()
    assert "rolled back" in message and "acknowledge-rollback" in message, message

    ack = insitu(
        "audit",
        *("acknowledge-rollback", "--by", "operator", "--home", str(new_home)),
        database_url=restore_url,
    )
    assert ack.returncode == 0, ack.stderr
    try:
        restored.start()
        with restored.client() as client:
            again = [restored.submit(client)]
            wait_terminal(client, again, timeout_s=120)
            fresh = receipt_of(client, again[0], tmp_path / "fresh.json")
    finally:
        restored.stop()
    checked = {
        i: insitu("audit", "receipt", str(path), "--home", str(new_home), database_url=restore_url)
        for i, path in old.items()
    }
    for job_id in before:
        assert checked[job_id].returncode == 0, checked[job_id].stderr
    for job_id in after:
        assert checked[job_id].returncode == 1
        said = checked[job_id].stderr
        assert "LOST" in said and "acknowledged rollback" in said, said
    fresh_check = insitu(
        "audit", "receipt", str(fresh), "--home", str(new_home), database_url=restore_url
    )
    assert fresh_check.returncode == 0, fresh_check.stderr
    verify(json.loads(fresh.read_text())["receipt"], vkeys(restored.settings))
    verified = insitu("audit", "verify", "--home", str(new_home), database_url=restore_url)
    assert verified.returncode == 0, verified.stderr
