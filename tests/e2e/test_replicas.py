"""deploy/compose.yaml's topology as processes: two `insitu serve` replicas on one PostgreSQL
and one Spark Connect server (docker has no daemon on the build machines).

Jobs go to both replicas and are read back from the other; the replicas share one audit log
(one tree, verified offline), one ledger (both charges on one budget) and one policy (a
change approved on one replica is live on the other within the refresh interval).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import IN_CI

if importlib.util.find_spec("pyspark") is None:  # the `spark` extra (make test installs it)
    if IN_CI:
        raise ImportError("pyspark is missing: with CI=true the Spark tests must run")
    pytest.skip("pyspark is not installed (pip install '.[spark]')", allow_module_level=True)

from gateway import home
from gateway.auth.issuer import LocalIssuer
from gateway.auth.keys import IssuerKeys
from gateway.demo import documents
from gateway.demo.data import write_demo_data
from gateway.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.xdist_group("spark")]

REFRESH_S = 1.0
SUBMIT_RULE = {"role": "analyst", "department": "*", "object": "job", "action": "submit"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def environment(home_dir: Path, postgres_url: str, spark_remote: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSITU_")}
    env.update(
        INSITU_HOME=str(home_dir),
        INSITU_DATABASE_URL=postgres_url,
        INSITU_ENGINE="spark",
        INSITU_SPARK_REMOTE=spark_remote,
        INSITU_POLICY_REFRESH_S=str(REFRESH_S),
        INSITU_JOB_TIMEOUT_S="600",
        INSITU_WORKERS="1",
    )
    return env


@pytest.fixture
def replicas(
    tmp_path: Path, postgres_url: str, spark_remote: str
) -> Iterator[tuple[list[httpx.Client], LocalIssuer, Settings]]:
    home_dir = tmp_path / "home"
    env = environment(home_dir, postgres_url, spark_remote)
    init = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "init"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert init.returncode == 0, init.stderr
    settings = Settings(home=home_dir, database_url=postgres_url)
    write_demo_data(settings.data_dir, enterprises_n=3_000, residents_n=3_000)
    processes, clients = [], []
    try:
        for _ in range(2):
            port = free_port()
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            clients.append(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120))
        for client in clients:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "a replica did not become ready"
                time.sleep(0.5)
        keys = IssuerKeys.load(settings.keys_dir / home.ISSUER_KEYS)
        issuer = LocalIssuer(keys, issuer=settings.local_issuer, audience=settings.oidc_audience)
        yield clients, issuer, settings
    finally:
        for client in clients:
            client.close()
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


class As:
    def __init__(self, issuer: LocalIssuer, subject: str, dept: str, role: str) -> None:
        token = issuer.issue(subject=subject, department=dept, roles=[role], ttl_s=3600)
        self.headers = {"Authorization": f"Bearer {token}"}

    def on(self, client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        response = client.request(method, path, headers=headers, **kwargs)
        assert response.status_code < 400, (path, response.text)
        return response.json()

    def yaml(self, client: httpx.Client, path: str, doc: str) -> Any:
        return self.on(
            client, "POST", path, content=doc.encode(), headers={"Content-Type": "application/yaml"}
        )


def result(analyst: As, client: httpx.Client, job_id: str) -> dict[str, Any]:
    for _ in range(20):
        body: dict[str, Any] = analyst.on(
            client, "GET", f"/v1/jobs/{job_id}/result", params={"wait": 60}
        )
        if body["status"] not in ("accepted", "running"):
            return body
    raise AssertionError("the job did not finish")


def test_two_replicas_share_one_store_one_log_one_ledger_and_one_policy(
    replicas: tuple[list[httpx.Client], LocalIssuer, Settings],
) -> None:
    (a, b), issuer, settings = replicas
    owners = {d: As(issuer, f"owner@{d}", d, "data_owner") for d in ("market", "tax", "civil")}
    analyst = As(issuer, "analyst@stats", "stats", "analyst")
    officers = [As(issuer, f"officer-{x}@security", "security", "security_officer") for x in "ab"]
    auditor = As(issuer, "auditor@audit", "audit", "auditor")
    # registered on one replica, approved on the other
    for client, (dept, doc) in zip(
        (a, b, a),
        (
            ("market", documents.ENTERPRISE_REGISTRY),
            ("tax", documents.TAX_FILINGS),
            ("civil", documents.RESIDENTS + documents.RESIDENTS_PRIVACY),
        ),
        strict=True,
    ):
        owners[dept].yaml(client, "/v1/datasets", doc)
    t = analyst.yaml(b, "/v1/templates", documents.NO_FILING_TEMPLATE)
    for client, dept in ((a, "market"), (b, "tax")):
        owners[dept].on(
            client,
            "POST",
            f"/v1/templates/{t['id']}/versions/1/approvals",
            json={"content_hash": t["content_hash"]},
        )
    dp = analyst.yaml(a, "/v1/templates", documents.DP_TEMPLATE)
    owners["civil"].on(
        b,
        "POST",
        f"/v1/templates/{dp['id']}/versions/1/approvals",
        json={"content_hash": dp["content_hash"]},
    )
    expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    purposes = []
    for dept, dataset in (("market", "market.enterprise_registry"), ("tax", "tax.filings")):
        asked = analyst.on(
            a, "POST", "/v1/purposes", json={"dataset": dataset, "purpose": "review"}
        )
        done = owners[dept].on(
            b, "POST", f"/v1/purposes/{asked['id']}/approvals", json={"expires_at": expires}
        )
        purposes.append(done["id"])

    # jobs submitted to both replicas, each read back from the other
    submitted = []
    for client in (a, b):
        job = analyst.on(
            client,
            "POST",
            "/v1/jobs",
            json={
                "template": t["id"],
                "parameters": {"year": 2024, "industry": "manufacturing"},
                "purposes": purposes,
            },
        )
        submitted.append(job["id"])
        noisy = analyst.on(
            client,
            "POST",
            "/v1/jobs",
            json={"template": dp["id"], "parameters": {"born_since": 1960}, "purpose": "care"},
        )
        submitted.append(noisy["id"])
    bodies = [
        result(analyst, other, job) for other, job in zip((b, b, a, a), submitted, strict=True)
    ]
    assert [body["status"] for body in bodies] == ["released"] * 4
    assert sorted(bodies[0]["rows"]) == sorted(bodies[2]["rows"])  # one engine, one answer

    # one ledger: both dp charges on one budget, seen alike from either replica
    budgets = [
        [
            x
            for x in analyst.on(c, "GET", "/v1/budgets")["budgets"]
            if x["dataset"] == "civil.residents"
        ]
        for c in (a, b)
    ]
    assert budgets[0] == budgets[1]
    assert [x["rho"]["spent"] for x in budgets[0]] == ["0.2"]

    # one audit log: the same checkpoint from both, and it verifies offline
    # (each read is audited too, so b's list is a's plus the entries of a's read)
    seen = [auditor.on(c, "GET", "/v1/audit/entries", params={"limit": 1000}) for c in (a, b)]
    first, second = (x["items"] for x in seen)
    assert len(first) > 20 and second[: len(first)] == first
    assert {e["event"]["type"] for e in first} >= {"job.accepted", "job.released"}
    verify = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "audit", "verify", "--home", str(settings.home)],
        env={
            **environment(settings.home, settings.resolved_database_url, "sc://x:1"),
            "INSITU_ENGINE": "duckdb",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # one policy: approved on replica a, live on replica b within the refresh interval
    question = {"roles": ["analyst"], "department": "stats", "object": "job", "action": "submit"}
    assert officers[0].on(b, "POST", "/v1/policies/check", json=question)["allowed"]
    proposal = officers[0].on(a, "POST", "/v1/policies", json={"remove": [SUBMIT_RULE]})
    officers[1].on(a, "POST", f"/v1/policies/proposals/{proposal['id']}/approvals", json={})
    time.sleep(REFRESH_S * 2 + 0.5)
    denied = b.post(
        "/v1/jobs",
        headers=analyst.headers,
        json={"template": dp["id"], "parameters": {"born_since": 1960}, "purpose": "care"},
    )
    assert denied.status_code == 403, denied.text
