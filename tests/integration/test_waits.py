"""Result waits hold no thread (issue 13): over real HTTP (uvicorn on loopback), many waits of
one caller leave health, readiness and other callers' requests answered; a caller's waits are
capped; a client that hangs up frees its slot; `POST /v1/jobs?wait=` answers with the result.

No timing is asserted: timeouts below only stop a broken test from hanging.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway import home
from gateway.api import create_app
from gateway.auth.issuer import LocalIssuer
from gateway.auth.keys import IssuerKeys
from gateway.auth.principal import Principal
from gateway.demo import documents
from gateway.demo.server import BackgroundServer
from gateway.jobs import waits, worker
from gateway.jobs.waits import WaitSlots
from gateway.settings import Settings
from tests.integration.conftest import Caller, World, grant_purpose

pytestmark = pytest.mark.slow

WAITS = 60  # more than the request thread pool (40): held threads would starve other routes
JOB = {
    "template": "enterprises-without-tax-filing",
    "parameters": {"year": 2024, "industry": "retail"},
}
GUARD_S = 60.0


def served_world(
    tmp_path: Path, database_url: str, demo_data_dir: Path, *, workers: bool
) -> Iterator[World]:
    settings = Settings(
        home=tmp_path / "home",
        database_url=database_url,
        workers=1,
        max_waits_per_caller=WAITS,
    )
    home.init_home(settings)
    for source in demo_data_dir.rglob("*.parquet"):
        target = settings.data_dir / source.relative_to(demo_data_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    keys = IssuerKeys.load(settings.keys_dir / home.ISSUER_KEYS)
    issuer = LocalIssuer(keys, issuer=settings.local_issuer, audience=settings.oidc_audience)
    app = create_app(settings, run_workers=workers)
    with BackgroundServer(app) as url, httpx.Client(base_url=url, timeout=GUARD_S) as client:
        yield World(settings=settings, client=client, issuer=issuer, app=app)  # type: ignore[arg-type]


@pytest.fixture
def world(tmp_path: Path, migrated_database_url: str, demo_data_dir: Path) -> Iterator[World]:
    yield from served_world(tmp_path, migrated_database_url, demo_data_dir, workers=False)


@pytest.fixture
def queued(
    world: World, approved_template: dict[str, Any], owners: dict[str, Caller], analyst: Caller
) -> str:
    """An accepted job that stays queued (this app runs no workers)."""
    grant_purpose(analyst, owners["market"], "market.enterprise_registry")
    grant_purpose(analyst, owners["tax"], "tax.filings")
    response = analyst.submit(JOB)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def held(world: World, subject: str, department: str) -> int:
    slots: WaitSlots = world.app.state.waits
    someone = Principal(subject, department, (), None, datetime.now(UTC) + timedelta(minutes=1))
    return slots.held(someone)


async def hold_waits(url: str, token: str, job_id: str, n: int, ready: asyncio.Event) -> list[int]:
    limits = httpx.Limits(max_connections=n + 5)
    async with httpx.AsyncClient(base_url=url, timeout=GUARD_S, limits=limits) as client:
        headers = {"Authorization": f"Bearer {token}"}
        tasks = [
            asyncio.create_task(
                client.get(f"/v1/jobs/{job_id}/result", params={"wait": 300}, headers=headers)
            )
            for _ in range(n)
        ]
        await ready.wait()
        for task in tasks:
            task.cancel()  # the clients hang up
        done = await asyncio.gather(*tasks, return_exceptions=True)
        return [r.status_code for r in done if isinstance(r, httpx.Response)]


def wait_until(condition: Any) -> None:
    deadline = time.monotonic() + GUARD_S
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.05)


def test_many_waits_hold_no_thread_and_hang_ups_free_their_slots(
    world: World, analyst: Caller, queued: str
) -> None:
    url = str(world.client.base_url)
    other = world.as_("colleague@stats", "stats", "analyst")

    async def scenario() -> list[int]:
        ready = asyncio.Event()
        holder = asyncio.create_task(hold_waits(url, analyst.token, queued, WAITS, ready))
        await asyncio.to_thread(wait_until, lambda: held(world, "analyst@stats", "stats") == WAITS)
        # every wait is open; the thread pool must still serve everyone else
        assert (await asyncio.to_thread(world.client.get, "/healthz")).status_code == 200
        assert (await asyncio.to_thread(world.client.get, "/readyz")).status_code == 200
        shown = await asyncio.to_thread(other.get, f"/v1/jobs/{queued}")
        assert shown.status_code == 200 and shown.json()["status"] == "accepted"
        # one wait more than the cap is refused at once, with Retry-After
        extra = await asyncio.to_thread(
            analyst.get, f"/v1/jobs/{queued}/result", params={"wait": 300}
        )
        assert extra.status_code == 429 and extra.headers["Retry-After"] == "1"
        # a colleague has slots of its own
        colleague = await asyncio.to_thread(
            other.get, f"/v1/jobs/{queued}/result", params={"wait": 0.2}
        )
        assert colleague.status_code == 202
        ready.set()
        return await holder

    assert asyncio.run(scenario()) == []  # every held wait was given up by its client
    wait_until(lambda: held(world, "analyst@stats", "stats") == 0)


@pytest.fixture
def working_world(
    tmp_path: Path, migrated_database_url: str, demo_data_dir: Path
) -> Iterator[World]:
    yield from served_world(tmp_path, migrated_database_url, demo_data_dir, workers=True)


@pytest.mark.parametrize("migrated_database_url", ["sqlite"], indirect=True)
def test_submit_with_wait_answers_with_the_result(
    working_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a wait that missed a release would sleep an hour: the client's guard fails it instead
    monkeypatch.setattr(waits, "RECHECK_S", 3600.0)
    owners = {d: working_world.as_(f"owner@{d}", d, "data_owner") for d in ("market", "tax")}
    analyst = working_world.as_("analyst@stats", "stats", "analyst")
    for dept, doc in (
        ("market", documents.ENTERPRISE_REGISTRY),
        ("tax", documents.TAX_FILINGS),
    ):
        assert owners[dept].post_yaml("/v1/datasets", doc).status_code == 201
    proposed = analyst.post_yaml("/v1/templates", documents.NO_FILING_TEMPLATE).json()
    for dept in ("market", "tax"):
        approved = owners[dept].post(
            f"/v1/templates/{proposed['id']}/versions/1/approvals",
            json={"content_hash": proposed["content_hash"]},
        )
        assert approved.status_code == 201, approved.text
    grant_purpose(analyst, owners["market"], "market.enterprise_registry")
    grant_purpose(analyst, owners["tax"], "tax.filings")
    request = {"purposes": analyst.purposes, **JOB}
    key = {"Idempotency-Key": "waits-1"}
    done = analyst.post("/v1/jobs", params={"wait": 300}, json=request, headers=key)
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["status"] == "released" and body["rows"] and body["receipt"]
    assert done.headers["Location"] == f"/v1/jobs/{body['job']['id']}"
    # the same request again: the ended job's result at once (no release is coming to wake it)
    again = analyst.post("/v1/jobs", params={"wait": 300}, json=request, headers=key)
    assert again.status_code == 200, again.text
    assert again.json()["job"]["id"] == body["job"]["id"]
    assert again.json()["rows"] == body["rows"]


def test_a_wait_takes_the_end_its_worker_committed_without_reading_it_back(
    world: World, queued: str, analyst: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job this replica's worker ends while a wait here listens: the wait answers with the
    row and result the worker committed (`Gateway.handoffs`), not a read of them, and they
    are exactly what a read of the store gives."""
    monkeypatch.setattr(waits, "RECHECK_S", 3600.0)  # no look at the store before the release
    loads: list[str] = []
    load = waits.load
    monkeypatch.setattr(waits, "load", lambda gw, job_id: loads.append(job_id) or load(gw, job_id))
    gw = world.app.state.gateway
    with ThreadPoolExecutor(max_workers=1) as pool:
        waiting = pool.submit(analyst.get, f"/v1/jobs/{queued}/result", params={"wait": 60})
        wait_until(lambda: gw.jobs_finished.listening(queued))
        claimed = worker.claim(gw, "w1")
        assert claimed is not None and claimed.job.id == queued
        worker.Runner(gw).run(claimed.job, claimed.catalogue_seen)
        waited = waiting.result(timeout=GUARD_S)
    assert waited.status_code == 200, waited.text
    assert loads == []  # handed over, not read back
    assert gw.handoffs.take(queued) is None  # taken once
    read = analyst.get(f"/v1/jobs/{queued}/result")  # from the store
    assert read.status_code == 200, read.text
    handed, stored = waited.json(), read.json()
    assert handed["status"] == "released"
    for field in ("job", "status", "rows", "columns", "withheld", "result_hash"):
        assert handed[field] == stored[field], field
    assert handed["receipt"]["audit_index"] == stored["receipt"]["audit_index"]
