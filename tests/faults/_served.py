"""A real `insitu serve` subprocess on a seeded home, killed with SIGKILL from outside.

The home is seeded in-process first (datasets registered, the no-filing template approved by
both owners, purposes granted) through the real app without workers; then the gateway runs as
its own process, as an operator runs it, with short leases so recovery is quick to observe.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from audit import NoteVerifier, verify_receipt
from gateway import home
from gateway.api import create_app
from gateway.auth.issuer import LocalIssuer
from gateway.auth.keys import IssuerKeys
from gateway.demo import documents
from gateway.settings import Settings
from tests.integration.conftest import (
    World,
    copy_demo_data,
    grant_purpose,
    owners_of,
    register_demo_datasets,
)

ROOT = Path(__file__).resolve().parents[2]
LEASE_S = 2.0
SUBMIT = {
    "template": "enterprises-without-tax-filing",
    "parameters": {"year": 2024, "industry": "manufacturing"},
    "purpose": "compliance campaign",
}
TERMINAL = {"released", "suppressed", "failed"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(settings: Settings, data_dir: Path) -> list[str]:
    """Init the home, copy the demo data, register, approve; return the analyst's purposes."""
    home.init_home(settings)
    copy_demo_data(data_dir, settings)
    keys = IssuerKeys.load(settings.keys_dir / home.ISSUER_KEYS)
    issuer = LocalIssuer(keys, issuer=settings.local_issuer, audience=settings.oidc_audience)
    app = create_app(settings, run_workers=False)
    with TestClient(app) as client:
        world = World(settings=settings, client=client, issuer=issuer, app=app)
        owners = owners_of(world)
        analyst = world.as_("analyst@stats", "stats", "analyst")
        register_demo_datasets(owners)
        proposed = analyst.post_yaml("/v1/templates", documents.NO_FILING_TEMPLATE).json()
        for dept in ("market", "tax"):
            r = owners[dept].post(
                f"/v1/templates/{proposed['id']}/versions/1/approvals",
                json={"content_hash": proposed["content_hash"]},
            )
            assert r.status_code == 201, r.text
        for dept, ds in (("market", "market.enterprise_registry"), ("tax", "tax.filings")):
            grant_purpose(analyst, owners[dept], ds)
        return list(analyst.purposes)


@dataclass
class Served:
    """One gateway process on `settings.home`; `start`, `kill9`, `stop`."""

    settings: Settings
    purposes: list[str]
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INSITU_")}
        env.update(
            PYTHONPATH=str(ROOT),
            INSITU_HOME=str(self.settings.home),
            INSITU_JOB_LEASE_S=str(LEASE_S),
            INSITU_WORKERS="2",
            INSITU_SANDBOX_SPARES="1",
            **self.env,
        )
        if self.settings.database_url:
            env["INSITU_DATABASE_URL"] = self.settings.database_url
        return env

    @property
    def log(self) -> Path:
        """The gateway's stderr (a file: a pipe nobody drains would block its logging)."""
        return self.settings.home.parent / f"gateway-{self.port}.log"

    def start(self, *, wait: bool = True) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "serve", "--port", str(self.port)],
                env=self._env(),
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        if wait:
            self.wait_ready()
        return self.process

    def errors(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"the gateway exited: {self.errors()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/readyz", timeout=5).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError("the gateway did not become ready")

    def sandbox_pids(self) -> set[int]:
        """Sandbox worker processes whose parent is this gateway."""
        assert self.process is not None
        pids = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    stat = (entry / "stat").read_text()
                    cmd = (entry / "cmdline").read_bytes()
                    ppid = int(stat.rsplit(")", 1)[1].split()[1])
                    if ppid == self.process.pid and b"sandbox.engines.worker" in cmd:
                        pids.add(int(entry.name))
        return pids

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()

    # -- a client -------------------------------------------------------------------------

    def token(self, *roles: str, subject: str = "analyst@stats", dept: str = "stats") -> str:
        keys = IssuerKeys.load(self.settings.keys_dir / home.ISSUER_KEYS)
        issuer = LocalIssuer(
            keys, issuer=self.settings.local_issuer, audience=self.settings.oidc_audience
        )
        return issuer.issue(subject=subject, department=dept, roles=list(roles or ["analyst"]))

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.token()}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def submit(self, client: httpx.Client) -> str:
        r = client.post("/v1/jobs", json={**SUBMIT, "purposes": self.purposes})
        assert r.status_code == 202, r.text
        return str(r.json()["id"])


def wait_terminal(client: httpx.Client, ids: list[str], timeout_s: float) -> dict[str, str]:
    """Each job's status once every one is terminal (AssertionError past `timeout_s`)."""
    deadline = time.monotonic() + timeout_s
    status: dict[str, str] = {}
    while time.monotonic() < deadline:
        status = {i: client.get(f"/v1/jobs/{i}").json()["status"] for i in ids}
        if set(status.values()) <= TERMINAL:
            return status
        time.sleep(0.2)
    raise AssertionError(f"jobs stuck past the lease: {status}")


def verify(receipt: dict[str, Any], vkeys: list[str]) -> None:
    verify_receipt(receipt, [NoteVerifier.from_vkey(v) for v in vkeys])


def vkeys(settings: Settings) -> list[str]:
    return [v.vkey for v in home.open_trail(settings).log.verifiers]


def dump(obj: Any) -> str:
    return json.dumps(obj)
