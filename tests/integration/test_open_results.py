"""Open results (issue 18b) over HTTP on SQLite and PostgreSQL: a data owner publishes a
released result; anyone reads it under /open/v1 without signing in and checks it against its
receipt, the public checkpoint and keys; API keys with rate limits; reads counted as a
summary; usage figures at a signed checkpoint."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import time
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from audit import (
    NoteVerifier,
    ProofError,
    open_checkpoint,
    verify_consistency,
    verify_receipt,
)
from gateway.demo import documents
from gateway.opendata.cache import RECHECK_S
from gateway.opendata.limits import RateLimiter
from gateway.store import db
from tests.integration.conftest import Caller, World

pytestmark = pytest.mark.slow


def released_job(analyst: Caller, status: str = "valid") -> str:
    job = analyst.submit({"template": "licences-by-district", "parameters": {"status": status}})
    assert job.status_code == 202, job.text
    job_id: str = job.json()["id"]
    result = analyst.get(f"/v1/jobs/{job_id}/result", params={"wait": 30}).json()
    assert result["status"] == "released", result
    return job_id


@pytest.fixture
def open_template(world: World, owners: dict[str, Caller], analyst: Caller) -> None:
    assert owners["market"].post_yaml("/v1/datasets", documents.LICENCES).status_code == 201
    proposed = analyst.post_yaml("/v1/templates", documents.OPEN_TEMPLATE).json()
    approved = owners["market"].post(
        "/v1/templates/licences-by-district/versions/1/approvals",
        json={"content_hash": proposed["content_hash"]},
    )
    assert approved.status_code == 201, approved.text


def publish(owner: Caller, job_id: str, open_id: str = "licences-valid") -> dict[str, Any]:
    r = owner.post(
        f"/v1/open/{open_id}",
        json={
            "job": job_id,
            "title": "Valid business licences by district",
            "description": "counts under disclosure control",
            "licence": "CC-BY-4.0",
            "update_cycle": "monthly",
        },
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def anonymous(world: World) -> TestClient:
    return world.client  # no Authorization header is ever sent by these calls


def test_published_result_read_anonymously_and_checked_against_its_receipt(
    world: World, open_template: None, owners: dict[str, Caller], analyst: Caller
) -> None:
    job_id = released_job(analyst)
    published = publish(owners["market"], job_id)
    assert published["version"] == 1 and published["open_class"] == "open"
    client = anonymous(world)
    catalogue = client.get("/open/v1/datasets")
    assert catalogue.status_code == 200
    assert catalogue.headers["content-type"].startswith("application/ld+json")
    entries = catalogue.json()["dcat:dataset"]
    assert [e["dct:identifier"] for e in entries] == ["licences-valid"]
    assert entries[0]["dct:license"] == "CC-BY-4.0"
    doc = client.get("/open/v1/datasets/licences-valid").json()
    assert doc["template"] == {"id": "licences-by-district", "version": 1}
    assert doc["parameters"] == {"status": "valid"}
    # the check anyone can do: keys and checkpoint from the open API, the receipt from the doc
    keys = client.get("/open/v1/audit/keys").json()
    verifiers = [NoteVerifier.from_vkey(v) for v in keys["vkeys"]]
    verified = verify_receipt(doc["receipt"], verifiers)
    entry = verified.event
    assert entry.type == "open.published"
    canonical = json.dumps(
        doc["result"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()
    assert entry.details["result_hash"] == "sha256:" + hashlib.sha256(canonical).hexdigest()
    data = client.get("/open/v1/datasets/licences-valid/data.csv")
    assert data.headers["content-type"].startswith("text/csv")
    assert entry.details["csv_sha256"] == "sha256:" + hashlib.sha256(data.content).hexdigest()
    rows = list(csv.reader(io.StringIO(data.text)))
    assert rows[0] == doc["result"]["columns"] and len(rows) == len(doc["result"]["rows"]) + 1
    # the receipt's checkpoint is consistent with a newer public one
    owners["market"].get("/v1/datasets")  # more entries, then a newer signed checkpoint
    gw = world.app.state.gateway
    with db.reading(gw.db) as conn:
        size = gw.audit.log.size(conn)
    gw.audit.committer.checkpoint(size)
    current = client.get("/open/v1/audit/checkpoint").json()
    head = open_checkpoint(current["checkpoint"], verifiers, keys["origin"])
    older = verified.checkpoint
    assert older.size < head.size
    proof = client.get(
        "/open/v1/audit/proofs/consistency", params={"first": older.size, "second": head.size}
    ).json()["proof"]
    hashes = [bytes.fromhex(p) for p in proof]
    verify_consistency(older.size, head.size, hashes, older.root, head.root)
    with pytest.raises(ProofError):  # a rewritten log would not be consistent
        verify_consistency(older.size, head.size, hashes, bytes(32), head.root)
    # the entry carries no job id
    assert job_id not in base64.b64decode(doc["receipt"]["entry"]).decode()


def test_refresh_makes_a_new_version_and_unpublishing_keeps_history(
    world: World, open_template: None, owners: dict[str, Caller], analyst: Caller
) -> None:
    publish(owners["market"], released_job(analyst))
    client = anonymous(world)
    first = client.get("/open/v1/datasets/licences-valid").json()
    second_job = released_job(analyst)
    refreshed = owners["market"].post("/v1/open/licences-valid/versions", json={"job": second_job})
    assert refreshed.status_code == 201, refreshed.text
    assert refreshed.json()["version"] == 2
    latest = client.get("/open/v1/datasets/licences-valid").json()  # cache invalidated
    assert latest["version"] == 2
    assert (
        client.get("/open/v1/datasets/licences-valid", params={"version": 1}).json()["receipt"]
        == first["receipt"]
    )
    gone = owners["market"].post("/v1/open/licences-valid/unpublish", json={"note": "stale"})
    assert gone.status_code == 200, gone.text
    assert client.get("/open/v1/datasets/licences-valid").status_code == 404
    assert client.get("/open/v1/datasets/licences-valid", params={"version": 1}).status_code == 404
    assert client.get("/open/v1/datasets").json()["dcat:dataset"] == []
    history = owners["market"].get("/v1/open/licences-valid").json()
    assert history["status"] == "unpublished"
    assert [v["version"] for v in history["versions"]] == [1, 2]
    # another department's owner does not see it
    assert owners["tax"].get("/v1/open/licences-valid").status_code == 404


def test_publishing_refused_for_closed_data_other_departments_and_unreleased_jobs(
    world: World, approved_template: dict[str, Any], owners: dict[str, Caller], analyst: Caller
) -> None:
    # enterprises-without-tax-filing reads market and tax data whose open_class is closed
    job = analyst.submit(
        {
            "template": "enterprises-without-tax-filing",
            "parameters": {"year": 2023, "industry": "retail"},
        }
    )
    job_id = job.json()["id"]
    assert (
        analyst.get(f"/v1/jobs/{job_id}/result", params={"wait": 30}).json()["status"] == "released"
    )
    refused = owners["market"].post("/v1/open/no-filing", json={"job": job_id, "title": "t"})
    assert refused.status_code == 403
    assert "不予开放" in refused.json()["detail"]
    civil = owners["civil"].post("/v1/open/no-filing", json={"job": job_id, "title": "t"})
    assert civil.status_code == 403  # civil provides nothing to this template
    assert analyst.post("/v1/open/no-filing", json={"job": job_id, "title": "t"}).status_code == 403
    missing = owners["market"].post("/v1/open/x", json={"job": "nope", "title": "t"})
    assert missing.status_code == 404
    assert world.client.get("/open/v1/datasets/no-filing").status_code == 404


def test_api_keys_rate_limits_and_counted_reads(
    world: World, open_template: None, owners: dict[str, Caller], analyst: Caller
) -> None:
    publish(owners["market"], released_job(analyst))
    # the real limiter on a clock that stands still: no token comes back while the test runs
    world.app.state.open.limiter = RateLimiter(clock=lambda: 1000.0)
    officer = world.as_("officer@sec", "security", "security_officer")
    assert owners["market"].post("/v1/apikeys", json={"holder": "app_x"}).status_code == 403
    issued = officer.post("/v1/apikeys", json={"holder": "app_x", "per_minute": 3})
    assert issued.status_code == 201, issued.text
    key = issued.json()["key"]
    client = world.client
    path = "/open/v1/datasets/licences-valid"
    codes = [client.get(path, headers={"X-API-Key": key}).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = client.get(path, headers={"X-API-Key": key})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert limited.headers["content-type"].startswith("application/problem+json")
    assert client.get(path, headers={"X-API-Key": "isk_not-a-key"}).status_code == 401
    # anonymous callers have their own, lower limit (60 a minute by default)
    anon = [client.get(path).status_code for _ in range(61)]
    assert anon.count(200) == 60 and anon[-1] == 429
    revoked = officer.post(f"/v1/apikeys/{issued.json()['id']}/revocations")
    assert revoked.status_code == 201
    assert client.get(path, headers={"X-API-Key": key}).status_code == 401
    # the reads are one summary entry, not one entry each
    service = world.app.state.open
    service.reads.flush(force=True)
    auditor = world.as_("auditor@audit", "audit", "auditor")
    items = auditor.get("/v1/audit/entries", params={"type": "open.reads_summary"}).json()["items"]
    # one entry per minute window: two if the test ran across a minute's end
    assert 1 <= len(items) <= 2
    counts: Counter[tuple[str, str]] = Counter()
    for item in items:
        for c in item["event"]["details"]["counts"]:
            counts[(c["holder"], c["outcome"])] += c["calls"]
    assert counts[("app_x", "served")] == 3 and counts[("app_x", "limited")] == 2
    assert counts[("anonymous", "served")] == 60
    reads = auditor.get("/v1/audit/stats").json()["open_reads"]
    assert {(r["department"], r["calls"], r["refused"]) for r in reads} >= {("app_x", 3, 2)}
    # usage as open data, at a signed checkpoint
    gw = world.app.state.gateway
    with db.reading(gw.db) as conn:
        size = gw.audit.log.size(conn)
    gw.audit.committer.checkpoint(size)
    portal = {"X-API-Key": officer_key(officer)}  # the anonymous allowance is used up
    usage = client.get("/open/v1/usage", headers=portal).json()
    keys = client.get("/open/v1/audit/keys", headers=portal).json()
    head = verify_checkpoint(usage["checkpoint"], keys)
    assert head == usage["tree_size"]
    opened = [u for u in usage["items"] if u["kind"] == "open" and u["dataset"] == "licences-valid"]
    assert {(u["department"], u["calls"]) for u in opened} >= {("app_x", 3), ("anonymous", 60)}
    jobs = [u for u in usage["items"] if u["kind"] == "job"]
    assert any(u["department"] == "stats" and u["dataset"] == "market.licences" for u in jobs)
    assert all(u["tree_size"] == usage["tree_size"] for u in usage["items"])


def officer_key(officer: Caller) -> str:
    issued = officer.post("/v1/apikeys", json={"holder": "stats_portal", "per_minute": 100})
    key: str = issued.json()["key"]
    return key


def verify_checkpoint(note: str, keys: dict[str, Any]) -> int:
    verifiers = [NoteVerifier.from_vkey(v) for v in keys["vkeys"]]
    return open_checkpoint(note, verifiers, keys["origin"]).size


def test_conditional_open_class_needs_an_api_key(
    world: World, owners: dict[str, Caller], analyst: Caller
) -> None:
    doc = documents.LICENCES.replace("open_class: open", "open_class: conditional")
    assert owners["market"].post_yaml("/v1/datasets", doc).status_code == 201
    proposed = analyst.post_yaml("/v1/templates", documents.OPEN_TEMPLATE).json()
    owners["market"].post(
        "/v1/templates/licences-by-district/versions/1/approvals",
        json={"content_hash": proposed["content_hash"]},
    )
    published = publish(owners["market"], released_job(analyst))
    assert published["open_class"] == "conditional"
    path = "/open/v1/datasets/licences-valid"
    assert world.client.get(path).status_code == 403
    officer = world.as_("officer@sec", "security", "security_officer")
    key = officer_key(officer)
    assert world.client.get(path, headers={"X-API-Key": key}).status_code == 200


@pytest.mark.parametrize("migrated_database_url", ["postgresql"], indirect=True)
def test_open_reads_fail_closed_with_503_while_the_store_is_away(
    world: World,
    open_template: None,
    owners: dict[str, Caller],
    analyst: Caller,
    pg_admin_url: str,
) -> None:
    """The open fast path serves from its cache, but only while it can still ask the store
    whether anything was unpublished: with the store away it answers 503 (problem JSON, no
    rows, no path), and the same bytes again once the store is back."""
    publish(owners["market"], released_job(analyst))
    client = anonymous(world)
    paths = ("/open/v1/datasets/licences-valid", "/open/v1/datasets/licences-valid/data.csv")
    before = {p: client.get(p) for p in paths}
    assert {r.status_code for r in before.values()} == {200}
    name = world.app.state.gateway.db.url.database
    admin = sa.create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")

    def allow(allowed: bool) -> None:
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

    allow(False)
    try:
        time.sleep(RECHECK_S + 0.2)  # past the cache's look at the store's publication stamp
        for path in (*paths, "/open/v1/datasets"):
            away = client.get(path)
            assert away.status_code == 503, (path, away.text)
            assert away.headers["content-type"].startswith("application/problem+json")
            text = away.text
            assert "licences" not in text.replace(path, "") and "/" not in away.json()["detail"]
    finally:
        allow(True)
        admin.dispose()
    world.app.state.gateway.db.dispose()  # connections the outage broke
    after = {p: client.get(p) for p in paths}
    assert {p: r.content for p, r in after.items()} == {p: r.content for p, r in before.items()}
