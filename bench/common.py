"""Shared helpers: timing, result files, a served gateway on a scratch home."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from gateway import home
from gateway.api import create_app
from gateway.auth.issuer import LocalIssuer
from gateway.auth.keys import IssuerKeys
from gateway.demo.server import BackgroundServer
from gateway.settings import Settings

RESULTS = Path(__file__).parent / "results"


def timed(fn: Callable[[], object], *, repeat: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": statistics.median(ordered) * 1000,
        "p10_ms": ordered[len(ordered) // 10] * 1000,
        "p90_ms": ordered[(len(ordered) * 9) // 10] * 1000,
        "n": len(ordered),
    }


def write_result(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {
        "benchmark": name,
        "at": datetime.now(UTC).isoformat(),
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
        },
        **payload,
    }
    path.write_text(json.dumps(payload, indent=2))
    return path


@dataclass
class Served:
    """A gateway served on loopback over a scratch home, with a data owner and an analyst."""

    http: httpx.Client
    owner: str
    analyst: str

    def call(self, token: str, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", **kw.pop("headers", {})}
        response = self.http.request(method, path, headers=headers, **kw)
        response.raise_for_status()
        return response

    def register(self, dataset: str, template: str) -> None:
        """The owner registers `dataset` (already registered is fine), the analyst proposes
        `template`, the owner approves it."""
        yaml = {"Content-Type": "application/yaml"}
        registered = self.http.post(
            "/v1/datasets",
            content=dataset.encode(),
            headers={"Authorization": f"Bearer {self.owner}", **yaml},
        )
        assert registered.status_code in (201, 409), registered.text
        t = self.call(
            self.analyst, "POST", "/v1/templates", content=template.encode(), headers=yaml
        ).json()
        self.call(
            self.owner,
            "POST",
            f"/v1/templates/{t['id']}/versions/{t['version']}/approvals",
            json={"content_hash": t["content_hash"]},
        )

    def job(
        self, submission: dict[str, Any], *, wait_s: int = 120, one_call: bool = False
    ) -> dict[str, Any]:
        """Submit a job as the analyst and return its released result: with `one_call`,
        `POST /v1/jobs?wait=` (the synchronous fast path), else the POST then
        `GET /v1/jobs/{id}/result?wait=`."""
        if one_call:
            body: dict[str, Any] = self.call(
                self.analyst, "POST", "/v1/jobs", json=submission, params={"wait": wait_s}
            ).json()
            assert body["status"] == "released", body
            return body
        job = self.call(self.analyst, "POST", "/v1/jobs", json=submission).json()
        body = self.call(
            self.analyst, "GET", f"/v1/jobs/{job['id']}/result", params={"wait": wait_s}
        ).json()
        assert body["status"] == "released", body
        return body


@contextmanager
def served(home_dir: Path, *, timeout_s: float = 600) -> Iterator[Served]:
    """Serve the gateway of `home_dir` (initialised) until the block ends."""
    settings = Settings(home=home_dir, database_url=None)
    keys = IssuerKeys.load(settings.keys_dir / home.ISSUER_KEYS)
    issuer = LocalIssuer(keys, issuer=settings.local_issuer, audience=settings.oidc_audience)
    owner = issuer.issue(subject="owner@bench", department="bench", roles=["data_owner"])
    analyst = issuer.issue(subject="analyst@stats", department="stats", roles=["analyst"])
    with (
        BackgroundServer(create_app(settings)) as url,
        httpx.Client(base_url=url, timeout=timeout_s) as http,
    ):
        yield Served(http, owner, analyst)
