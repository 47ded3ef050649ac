"""Refused authentications are audited: the first per reason at once, the rest summarised."""

from __future__ import annotations

import json
from typing import Any

from audit import decode
from gateway.auth.issuer import LocalIssuer
from gateway.auth.keys import IssuerKeys
from gateway.store import db
from gateway.trail.refusals import FailedAuthentications
from tests.integration.conftest import World


def entries(world: World, kind: str) -> list[dict[str, Any]]:
    gw = world.app.state.gateway
    with db.reading(gw.db) as conn:
        rows = gw.audit.log.query(conn, terms=[f"type:{kind}"], limit=1000)
    return [json.loads(body) for _, body in rows]


def test_refused_tokens_are_audited_first_per_reason_without_the_token(
    world: World, tmp_path: Any
) -> None:
    rogue = LocalIssuer(
        IssuerKeys.generate(tmp_path / "rogue.json"),
        issuer=world.settings.local_issuer,
        audience=world.settings.oidc_audience,
    )
    forged = rogue.issue(subject="evil", department="stats", roles=["analyst"])
    for headers in (
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Bearer not-a-jwt-either"},
        {"Authorization": f"Bearer {forged}"},
    ):
        assert world.client.get("/v1/datasets", headers=headers).status_code == 401
    denied = entries(world, "auth.denied")
    reasons = [e["reason"] for e in denied]
    assert len(reasons) == len(set(reasons)) == 3  # the second malformed token is only counted
    assert "no bearer token" in reasons
    for entry in denied:
        assert entry["allowed"] is False and entry["actor"]["subject"] == "unauthenticated"
        assert entry["details"]["client"].startswith("hmac-sha256:")
        assert "not-a-jwt" not in json.dumps(entry) and forged[:20] not in json.dumps(entry)
    ok = world.as_("a@stats", "stats", "analyst").get("/v1/datasets")
    assert ok.status_code == 200  # a good token is not noted


def test_a_flood_adds_one_entry_per_reason_and_a_summary_per_window(world: World) -> None:
    gw = world.app.state.gateway
    now = {"t": 1_800_000_000.0}
    failed = FailedAuthentications(gw.audit, window_s=60, clock=lambda: now["t"])
    with db.reading(gw.db) as conn:
        before = gw.audit.log.size(conn)
    for n in range(300):
        failed.note("token expired" if n % 3 else "untrusted signing key", f"10.0.0.{n % 7}")
    with db.reading(gw.db) as conn:
        assert gw.audit.log.size(conn) == before + 2  # the first of each reason
    now["t"] += 60  # the next window: its first failure closes the last one with a summary
    failed.note("token expired", "10.0.0.1")
    summaries = entries(world, "auth.denied_summary")
    assert [s["details"]["failures"] for s in summaries] == [
        {"token expired": 200, "untrusted signing key": 100}
    ]
    assert summaries[0]["details"]["clients"] == 7
    assert summaries[0]["details"]["window"] == "2027-01-15T08:00:00Z"
    failed.close()  # one failure in the new window, already written: no summary needed
    assert len(entries(world, "auth.denied_summary")) == 1
    failed.note("token expired", "10.0.0.1")  # written at once (counts restarted at close)
    failed.note("token expired", "10.0.0.2")  # counted
    failed.close()
    last = entries(world, "auth.denied_summary")[-1]["details"]
    assert last["failures"] == {"token expired": 2} and last["clients"] == 2
    with db.reading(gw.db) as conn:
        for index, body in gw.audit.log.query(conn, terms=["type:auth.denied"]):
            assert decode(body).allowed is False, index
