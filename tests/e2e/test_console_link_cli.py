"""`insitu console-link` refuses a bad identity with one line and exit code 2, and writes no
link; a good one prints the link alone, which signs in once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway import home
from gateway.console import sessions
from gateway.settings import Settings
from gateway.store import db

pytestmark = pytest.mark.slow


def console_link(home_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSITU_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "console-link", "--home", str(home_dir), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def stored_links(settings: Settings) -> int:
    engine = db.create_engine(settings.resolved_database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(sessions.links)).scalar_one()
    finally:
        engine.dispose()


def test_console_link_refuses_bad_identities_and_prints_a_link(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    home.init_home(settings)
    for args in (
        ("--subject", "bob", "--role", "analyst"),  # no department
        ("--subject", "bob@stats", "--role", "ana\u202elyst"),  # a bidi override in a role
        ("--subject", "bob\x1b[2J@stats", "--role", "analyst"),
    ):
        refused = console_link(settings.home, *args)
        assert refused.returncode == 2, refused.stderr
        assert refused.stdout == "" and len(refused.stderr.strip().splitlines()) == 1
    assert stored_links(settings) == 0
    done = console_link(
        settings.home, "--subject", "Bob@Stats", "--role", "analyst", "--url", "https://gw.example"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("https://gw.example/console/signin/link?token=")
    assert stored_links(settings) == 1


def test_serve_refuses_insecure_console_cookies_off_loopback(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    home.init_home(settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSITU_")}
    env["INSITU_CONSOLE_INSECURE_HTTP_COOKIES"] = "true"
    command = ["serve", "--home", str(settings.home), "--host", "0.0.0.0", "--port", "1"]
    refused = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert refused.returncode == 2, refused.stderr
    assert "loopback" in refused.stderr
