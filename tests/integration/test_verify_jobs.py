"""Verification (核验) jobs through the real app: answers, key bounds, sweeps, audit."""

from __future__ import annotations

import base64
import dataclasses
from datetime import timedelta
from typing import Any

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from gateway.demo import documents
from gateway.jobs import verify_keys, worker
from gateway.store import db, schema
from tests.integration.conftest import Caller, World, expire_lease

TEMPLATE = "resident-of-district"


@pytest.fixture
def verify_template(registered: None, owners: dict[str, Caller], analyst: Caller) -> dict[str, Any]:
    proposed = analyst.post_yaml("/v1/templates", documents.VERIFY_TEMPLATE)
    assert proposed.status_code == 201, proposed.text
    approved = owners["civil"].post(
        f"/v1/templates/{TEMPLATE}/versions/1/approvals",
        json={"content_hash": proposed.json()["content_hash"]},
    )
    assert approved.status_code == 201, approved.text
    body: dict[str, Any] = approved.json()
    assert body["status"] == "approved"
    return body


def residents(world: World) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (
        pq.read_table(world.settings.data_dir / "civil/residents.parquet")
        .select(["person_id", "district"])
        .to_pylist()
    )
    return rows


def submit(analyst: Caller, keys: list[Any], district: str = "chaoyang") -> Any:
    return analyst.post(
        "/v1/jobs",
        json={
            "template": TEMPLATE,
            "parameters": {"district": district, "person_id": keys},
            "purpose": "benefit eligibility check",
        },
    )


def answer(analyst: Caller, keys: list[Any], district: str = "chaoyang") -> dict[str, Any]:
    submitted = submit(analyst, keys, district)
    assert submitted.status_code == 202, submitted.text
    body: dict[str, Any] = analyst.get(
        f"/v1/jobs/{submitted.json()['id']}/result", params={"wait": 60}
    ).json()
    return body


def audit_items(world: World) -> list[dict[str, Any]]:
    auditor = world.as_("auditor@audit", "audit", "auditor")
    items: list[dict[str, Any]] = auditor.get("/v1/audit/entries", params={"limit": 1000}).json()[
        "items"
    ]
    return items


def test_verify_answers_match_or_no_match_per_key_on_not_shared_data(
    world: World, analyst: Caller, verify_template: dict[str, Any]
) -> None:
    people = residents(world)
    inside = [p["person_id"] for p in people if p["district"] == "chaoyang"][:3]
    outside = [p["person_id"] for p in people if p["district"] != "chaoyang"][:2]
    keys = [inside[0], outside[0], inside[1], "P999999999", outside[1], inside[2]]
    body = answer(analyst, keys)
    assert body["status"] == "released", body["job"]["error"]
    assert body["columns"] == ["key_index", "matched"]
    assert body["rows"] == [[1, True], [2, False], [3, True], [4, False], [5, False], [6, True]]
    assert body["verify"] == {"answer": "match", "keys": 6, "matches": 3}
    # nothing but the bits: no district, no other column, no key echoed in the result
    flat = repr(body["rows"]) + repr(body["withheld"])
    assert all(k not in flat for k in keys)


def test_every_key_is_audited_as_a_keyed_fingerprint_and_not_kept(
    world: World, analyst: Caller, verify_template: dict[str, Any]
) -> None:
    keys = ["P000000001", "P000000002", "P000000003"]
    assert answer(analyst, keys)["status"] == "released"
    items = audit_items(world)
    accepted = next(i["event"] for i in items if i["event"]["type"] == "job.accepted")
    assert len(accepted["details"]["keys"]) == 3
    assert all(f.startswith("hmac-sha256:") for f in accepted["details"]["keys"])
    raw = b"".join(base64.b64decode(i["body"]) for i in items)
    assert all(k.encode() not in raw for k in keys)
    engine = db.create_engine(world.settings.resolved_database_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.select(schema.verify_requests)).all() == []
            stored = conn.execute(sa.select(schema.jobs.c.parameters)).scalar_one()
    finally:
        engine.dispose()
    assert stored == {"district": "chaoyang"}  # the keys are not stored with the job


def test_more_keys_than_the_owner_allows_per_request_are_refused(
    analyst: Caller, verify_template: dict[str, Any]
) -> None:
    keys = [f"P{n:09d}" for n in range(1, 22)]  # the owner allows 20 per request
    refused = submit(analyst, keys)
    assert refused.status_code == 422
    assert "at most 20 keys" in refused.json()["detail"]
    assert "P000000001" not in refused.text


def test_malformed_or_repeated_keys_are_refused_without_echo(
    analyst: Caller, verify_template: dict[str, Any]
) -> None:
    bad = submit(analyst, ["P000000001", "'; DROP TABLE x; --"])
    assert bad.status_code == 422 and "DROP" not in bad.text
    repeated = submit(analyst, ["P000000001", "P000000001"])
    assert repeated.status_code == 422
    assert submit(analyst, []).status_code == 422
    assert submit(analyst, "P000000001").status_code == 422  # type: ignore[arg-type]


def test_daily_key_quota_per_department_is_enforced(
    world: World, owners: dict[str, Caller], analyst: Caller, verify_template: dict[str, Any]
) -> None:
    people = [p["person_id"] for p in residents(world) if p["district"] == "chaoyang"]
    # 10 requests of 20 real, matching keys use the day's 200; the 11th is refused
    for n in range(10):
        body = answer(analyst, people[n * 20 : (n + 1) * 20])
        assert body["status"] == "released", body["job"]["error"]
    refused = submit(analyst, people[200:201])
    assert refused.status_code == 403
    assert refused.json()["reason_code"] == "verify_quota"
    assert "civil.residents" in refused.json()["detail"]
    denied = [i["event"] for i in audit_items(world) if i["event"]["type"] == "job.denied"]
    assert denied[-1]["details"]["reason_code"] == "verify_quota"
    # another department has its own quota
    other = world.as_("analyst@health", "health", "analyst")
    assert answer(other, people[:1])["status"] == "released"


def test_a_sweep_is_refused_blocked_and_reported_to_the_owner(
    world: World, owners: dict[str, Caller], analyst: Caller, verify_template: dict[str, Any]
) -> None:
    # enumerating guessed ids: 20 + 20 keys, almost none of them in the district
    guesses = [f"P{n:09d}" for n in range(1, 41)]
    first = answer(analyst, guesses[:20])
    assert first["status"] == "released"  # 20 keys: below the sweep threshold of 30
    second = answer(analyst, guesses[20:])
    assert second["status"] == "failed"
    assert "enumeration" in second["job"]["error"]
    assert "rows" not in second  # nothing was released
    # the department is blocked for the day
    blocked = submit(analyst, ["P000000099"])
    assert blocked.status_code == 403
    assert blocked.json()["reason_code"] == "verify_sweep"
    denied = [i["event"] for i in audit_items(world) if i["event"]["type"] == "job.denied"]
    assert denied[-1]["details"]["reason_code"] == "verify_sweep"
    # the owner sees the alert; an audit entry records it
    alerts = owners["civil"].get("/v1/verify/alerts").json()["items"]
    assert len(alerts) == 1
    assert alerts[0]["dataset"] == "civil.residents" and alerts[0]["department"] == "stats"
    assert alerts[0]["keys"] == 40
    assert owners["market"].get("/v1/verify/alerts").json()["items"] == []
    types = [i["event"]["type"] for i in audit_items(world)]
    assert "verify.sweep_detected" in types
    assert analyst.get("/v1/verify/alerts").status_code == 403


def test_a_reclaimed_verify_job_counts_its_keys_once_and_answers_from_the_second_run(
    world: World, analyst: Caller, verify_template: dict[str, Any]
) -> None:
    """A worker that outlives its lease: its late outcome is dropped whole, the day's totals
    included (they are counted in the release's transaction), and the job's keys stay for the
    run that took it over, which answers and counts them once."""
    gw = world.app.state.gateway
    world.app.state.pool.stop()
    people = residents(world)
    keys = [p["person_id"] for p in people if p["district"] == "chaoyang"][:2]
    submitted = submit(analyst, keys)
    assert submitted.status_code == 202, submitted.text
    job = worker.claim_next(gw, "slow-worker")
    assert job is not None and job.id == submitted.json()["id"]
    late = worker.Runner(gw).execute(job)
    assert late.result is not None and late.settle is not None
    expire_lease(gw, job.id)
    again = worker.claim_next(gw, "other-replica")
    assert again is not None and again.id == job.id
    assert worker.finish(gw, job, late) is late  # dropped: the row is still the other run's
    with db.reading(gw.db) as conn:
        row = conn.execute(sa.select(schema.jobs).where(schema.jobs.c.id == job.id)).one()
    assert (row.status, row.lease_owner) == ("running", "other-replica")

    def usage() -> tuple[int, int]:
        u = schema.verify_usage
        with db.reading(gw.db) as conn:
            row = conn.execute(sa.select(u.c.checked, u.c.matches)).one()
        return int(row.checked), int(row.matches)

    assert usage() == (0, 0)
    worker.Runner(gw).run(again)
    body = analyst.get(f"/v1/jobs/{job.id}/result").json()
    assert body["status"] == "released", body
    assert body["rows"] == [[1, True], [2, True]]
    assert usage() == (2, 2)
    with db.reading(gw.db) as conn:
        kept = conn.execute(sa.select(sa.func.count()).select_from(schema.verify_requests))
        assert kept.scalar_one() == 0


def test_a_verify_job_that_ends_without_running_keeps_no_keys(
    world: World, analyst: Caller, verify_template: dict[str, Any]
) -> None:
    """A job lost more times than allowed fails without running its query: its keys are
    deleted with the failure all the same."""
    gw = world.app.state.gateway
    world.app.state.pool.stop()
    submitted = submit(analyst, ["P000000001"])
    assert submitted.status_code == 202, submitted.text
    job = worker.claim_next(gw, "w")
    assert job is not None
    worker.Runner(gw).run(dataclasses.replace(job, attempts=worker.MAX_ATTEMPTS + 1))
    body = analyst.get(f"/v1/jobs/{job.id}/result").json()
    assert body["status"] == "failed" and "lost" in body["job"]["error"]
    with db.reading(gw.db) as conn:
        kept = conn.execute(sa.select(sa.func.count()).select_from(schema.verify_requests))
        assert kept.scalar_one() == 0


def test_answers_released_after_midnight_count_towards_the_day_they_leave_on(
    world: World, analyst: Caller, verify_template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys reserved before midnight, answered after it: the answers are counted on the new
    day (whose row the department has not made yet), not lost to the sweep count."""
    gw = world.app.state.gateway
    world.app.state.pool.stop()
    submitted = submit(analyst, ["P000000001", "P000000002"])
    assert submitted.status_code == 202, submitted.text
    tomorrow = verify_keys.today() + timedelta(days=1)
    monkeypatch.setattr(verify_keys, "today", lambda: tomorrow)
    job = worker.claim_next(gw, "w")
    assert job is not None
    worker.Runner(gw).run(job)
    assert analyst.get(f"/v1/jobs/{job.id}/result").json()["status"] == "released"
    u = schema.verify_usage
    with db.reading(gw.db) as conn:
        rows = {r.day: (r.reserved, r.checked) for r in conn.execute(sa.select(u))}
    assert rows[tomorrow] == (0, 2)  # answered on the new day
    assert rows[tomorrow - timedelta(days=1)] == (2, 0)  # reserved on the old one


def test_count_answer_releases_only_the_number_of_matches(
    world: World, owners: dict[str, Caller], analyst: Caller, registered: None
) -> None:
    doc = documents.VERIFY_TEMPLATE.replace("answer: match", "answer: count").replace(
        "id: resident-of-district", "id: residents-counted"
    )
    proposed = analyst.post_yaml("/v1/templates", doc)
    assert proposed.status_code == 201, proposed.text
    owners["civil"].post(
        "/v1/templates/residents-counted/versions/1/approvals",
        json={"content_hash": proposed.json()["content_hash"]},
    )
    people = residents(world)
    inside = [p["person_id"] for p in people if p["district"] == "haidian"][:4]
    submitted = analyst.post(
        "/v1/jobs",
        json={
            "template": "residents-counted",
            "parameters": {"district": "haidian", "person_id": [*inside, "P999999998"]},
        },
    )
    assert submitted.status_code == 202, submitted.text
    body = analyst.get(f"/v1/jobs/{submitted.json()['id']}/result", params={"wait": 60}).json()
    assert body["status"] == "released", body["job"]["error"]
    assert body["columns"] == ["matches"] and body["rows"] == [[4]]


@pytest.mark.slow
def test_concurrent_requests_never_reserve_more_keys_than_the_day_allows(
    world: World, analyst: Caller, verify_template: dict[str, Any]
) -> None:
    """12 requests of 20 keys race for a day of 200: exactly 10 are accepted."""
    from concurrent.futures import ThreadPoolExecutor

    from gateway.errors import Forbidden
    from gateway.jobs import submit as jobs

    gw = world.app.state.gateway
    principal = gw.tokens.verify(analyst.token)
    people = [p["person_id"] for p in residents(world) if p["district"] == "chaoyang"]

    def one(n: int) -> str:
        try:
            jobs.submit(
                gw,
                principal,
                template_id=TEMPLATE,
                version=None,
                parameters={"district": "chaoyang", "person_id": people[n * 20 : (n + 1) * 20]},
                purpose="",
            )
        except Forbidden as exc:
            return str(exc.extensions.get("reason_code"))
        return "accepted"

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(one, range(12)))
    assert outcomes.count("accepted") == 10
    assert outcomes.count("verify_quota") == 2
    engine = db.create_engine(world.settings.resolved_database_url)
    try:
        with engine.connect() as conn:
            reserved = conn.execute(sa.select(schema.verify_usage.c.reserved)).scalar_one()
    finally:
        engine.dispose()
    assert reserved == 200
