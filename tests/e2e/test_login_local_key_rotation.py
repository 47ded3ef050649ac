"""The local issuer's key rotation as an operator runs it: `insitu token rotate-key` in one
process while the gateway keeps serving in another."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway import home
from gateway.api import create_app
from gateway.demo.server import BackgroundServer
from gateway.settings import Settings


def insitu(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSITU_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "200"},
        timeout=120,
        check=False,
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    settings = Settings(home=tmp_path / "home", workers=1)
    home.init_home(settings)
    with BackgroundServer(create_app(settings)) as url:
        yield url, settings.home


def issue(home_dir: Path, subject: str) -> str:
    out = insitu(
        "token", "issue", "--home", str(home_dir), "--subject", subject,
        "--department", "stats", "--role", "analyst",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def kids(url: str) -> list[str]:
    return [key["kid"] for key in httpx.get(f"{url}/.well-known/jwks.json").json()["keys"]]


def status(url: str, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.get(f"{url}/v1/datasets", headers=headers).status_code


@pytest.mark.slow
def test_rotation_window_then_revoking_rotation(served: tuple[str, Path]) -> None:
    url, home_dir = served
    [first_kid] = kids(url)
    first = issue(home_dir, "alice")
    assert status(url, first) == 200

    rotated = insitu("token", "rotate-key", "--home", str(home_dir), "--overlap", "3600")
    assert rotated.returncode == 0, rotated.stderr
    assert f"previous key {first_kid} stays valid until" in rotated.stdout
    second = issue(home_dir, "bob")
    assert kids(url)[1:] == [first_kid]  # the running gateway serves both keys
    second_kid = kids(url)[0]
    assert second_kid != first_kid
    assert status(url, second) == 200  # the new key is trusted without a restart
    assert status(url, first) == 200  # and the old one during the window

    revoked = insitu("token", "rotate-key", "--home", str(home_dir), "--overlap", "0")
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked" in revoked.stdout
    third = issue(home_dir, "carol")
    assert len(kids(url)) == 1 and kids(url)[0] not in {first_kid, second_kid}
    assert status(url, third) == 200
    assert status(url, second) == 401  # the leaked key's tokens stop at once
    assert status(url, first) == 401


@pytest.mark.slow
def test_rotate_key_refuses_a_bad_overlap(tmp_path: Path) -> None:
    assert insitu("init", "--home", str(tmp_path)).returncode == 0
    out = insitu("token", "rotate-key", "--home", str(tmp_path), "--overlap", "-5")
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1
