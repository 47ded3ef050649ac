"""Receipts, checkpoint cadence, review queries, statistics and witness cosignatures over the
real API on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from audit import (
    Checkpoint,
    NoteVerifier,
    Signer,
    VerificationError,
    Witness,
    WitnessServer,
    sign_checkpoint,
    sign_note,
    verify_bundle,
    verify_receipt,
)
from gateway.cli.audit_cmds import RESULT_KEYS, result_hash
from gateway.store import db
from tests.integration.conftest import Caller, World
from tests.integration.test_job_path import SUBMIT, run_job


def auditor(world: World) -> Caller:
    return world.as_("auditor@audit", "audit", "auditor")


def checkpoint_rows(world: World) -> int:
    gw = world.app.state.gateway
    with db.reading(gw.db) as conn:
        return int(conn.execute(sa.text("SELECT COUNT(*) FROM audit_checkpoints")).scalar_one())


def log_key(world: World) -> NoteVerifier:
    return NoteVerifier.from_vkey(auditor(world).get("/v1/audit/keys").json()["current"])


def test_every_release_returns_a_receipt_that_verifies_alone_and_names_the_result(
    world: World, analyst: Caller, approved_template: dict[str, Any]
) -> None:
    body = run_job(analyst)
    checked = verify_receipt(body["receipt"], [log_key(world)])
    assert checked.event.type == "job.released"
    assert checked.event.target == f"job:{body['job']['id']}"
    result = {k: v for k, v in body.items() if k not in RESULT_KEYS}
    assert checked.event.details["result_hash"] == body["result_hash"] == result_hash(result)
    details = checked.event.details
    assert details["providers"] == ["market", "tax"] and details["managers"] == ["market", "tax"]
    assert details["datasets"] == ["market.enterprise_registry", "tax.filings"]


@pytest.mark.slow
def test_result_reads_do_not_write_a_checkpoint_each(
    world: World, analyst: Caller, approved_template: dict[str, Any]
) -> None:
    body = run_job(analyst)
    before = checkpoint_rows(world)
    receipts = [
        analyst.get(f"/v1/jobs/{body['job']['id']}/result").json()["receipt"] for _ in range(5)
    ]
    assert checkpoint_rows(world) == before  # the checkpoint signed after the release covers it
    assert len({r["checkpoint"] for r in receipts}) == 1
    for receipt in receipts:
        verify_receipt(receipt, [log_key(world)])


@pytest.mark.slow
def test_review_queries_by_party_decision_dataset_and_template(
    world: World, analyst: Caller, approved_template: dict[str, Any]
) -> None:
    run_job(analyst)
    analyst.submit({**SUBMIT, "purpose": "", "purposes": []})  # denied: needs a purpose
    who = auditor(world)

    def types(**params: Any) -> list[str]:
        response = who.get("/v1/audit/entries", params={"limit": 1000, **params})
        assert response.status_code == 200, response.text
        return [i["event"]["type"] for i in response.json()["items"]]

    assert "job.released" in types(provider="tax")
    assert "job.released" in types(manager="market")
    assert set(types(user="stats", decision="denied")) == {"job.denied"}
    assert "job.accepted" in types(dataset="tax.filings", template="enterprises-without-tax-filing")
    assert types(provider="civil") == []
    assert set(types(subject="analyst@stats")) >= {"job.accepted", "result.read", "job.denied"}
    newest = who.get("/v1/audit/entries", params={"latest": True, "limit": 3}).json()["items"]
    assert [i["index"] for i in newest] == sorted((i["index"] for i in newest), reverse=True)
    bad = who.get("/v1/audit/entries", params={"decision": "maybe"})
    assert bad.status_code == 422
    reads = types(type="audit.read", subject="auditor@audit")
    assert len(reads) >= 8  # the auditor's own reads above are in the log


def test_stats_count_calls_per_department_dataset_template_and_day(
    world: World, analyst: Caller, approved_template: dict[str, Any]
) -> None:
    run_job(analyst)
    run_job(analyst)
    analyst.submit({**SUBMIT, "purpose": "", "purposes": []})
    body = auditor(world).get("/v1/audit/stats", params={"department": "stats"}).json()
    rows = {(r["dataset"], r["template"]): r for r in body["items"]}
    tax = rows[("tax.filings", "enterprises-without-tax-filing")]
    assert (tax["allowed"], tax["department"]) == (2, "stats")
    assert sum(r["denied"] for r in body["items"]) == 1
    assert body["total"] == {"allowed": 4, "denied": 1}  # two datasets per allowed call
    assert analyst.get("/v1/audit/stats").status_code == 403


@pytest.mark.slow
def test_export_bundle_verifies_offline_and_witness_cosignatures_travel(
    world: World, analyst: Caller, approved_template: dict[str, Any], tmp_path: Path
) -> None:
    witness_key = Signer.generate("witness.test")
    legacy_key = Signer.generate("witness.old")  # a witness from before cosignature/v1
    gw = world.app.state.gateway
    run_job(analyst)
    who = auditor(world)
    note = who.get("/v1/audit/checkpoint").json()["checkpoint"]
    witness = Witness(witness_key, [log_key(world)], world.settings.audit_origin, tmp_path / "w")
    witnesses = f"{witness.vkey} {legacy_key.verifier().vkey}"
    object.__setattr__(gw.settings, "audit_witnesses", witnesses)
    cosigned = witness.cosign(note)
    assert who.post("/v1/audit/cosignatures", json={"checkpoint": cosigned}).json()["stored"] == 1
    assert who.post("/v1/audit/cosignatures", json={"checkpoint": cosigned}).json()["stored"] == 0
    text = note.split("\n\n")[0] + "\n"
    legacy = note + sign_note(text, [legacy_key]).split("\n\n", 1)[1]
    assert who.post("/v1/audit/cosignatures", json={"checkpoint": legacy}).json()["stored"] == 1
    forged = who.post("/v1/audit/cosignatures", json={"checkpoint": note})  # no witness on it
    assert forged.status_code == 422
    response = who.get("/v1/audit/bundle")
    assert response.status_code == 200
    path = tmp_path / "bundle.jsonl"
    path.write_bytes(response.content)
    report = verify_bundle(
        path, vkeys=[log_key(world).vkey], witnesses=witnesses.split(), cosignatures=2
    )
    assert report.witnessed_size == int(note.split("\n")[1])
    with pytest.raises(VerificationError):  # the witness's plain 0x01 key: not its cosignature
        verify_bundle(
            path,
            vkeys=[log_key(world).vkey],
            witnesses=[witness_key.verifier().vkey, legacy_key.verifier().vkey],
            cosignatures=2,
        )
    assert json.loads(path.read_text().splitlines()[0])["format"] == "insitu-audit-bundle"


@pytest.mark.slow
def test_gateway_asks_c2sp_witnesses_and_keeps_their_cosignatures(
    world: World, analyst: Caller, approved_template: dict[str, Any], tmp_path: Path
) -> None:
    gw = world.app.state.gateway
    witness = Witness(
        Signer.generate("witness.test/w1"),
        [log_key(world)],
        world.settings.audit_origin,
        tmp_path / "w.json",
    )
    server = WitnessServer(witness).start()
    try:
        object.__setattr__(gw.settings, "audit_witnesses", witness.vkey)
        object.__setattr__(gw.settings, "audit_witness_urls", server.url)
        who = auditor(world)
        first = who.post("/v1/audit/witness-requests").json()["witnesses"]
        assert first == [{"url": server.url, "size": first[0]["size"], "stored": 1, "error": None}]
        run_job(analyst)  # the log grows: the second request goes from the witness's size
        second = who.post("/v1/audit/witness-requests").json()["witnesses"][0]
        assert second["error"] is None and second["stored"] == 1
        assert second["size"] > first[0]["size"]
        last = witness.last()
        assert last is not None and last.size == second["size"]
        path = tmp_path / "bundle.jsonl"
        path.write_bytes(who.get("/v1/audit/bundle").content)
        report = verify_bundle(
            path, vkeys=[log_key(world).vkey], witnesses=[witness.vkey], cosignatures=1
        )
        assert report.witnessed_size == second["size"]
        assert analyst.post("/v1/audit/witness-requests").status_code == 403
    finally:
        server.shutdown()
        server.server_close()


def test_witness_request_reports_a_witness_that_saw_a_larger_log(
    world: World, tmp_path: Path
) -> None:
    """A witness whose state is beyond our log (we were rolled back) is reported, not obeyed."""
    gw = world.app.state.gateway
    other = Signer.generate(world.settings.audit_origin)  # a log key the witness trusts
    witness = Witness(
        Signer.generate("w"), [other.verifier()], world.settings.audit_origin, tmp_path / "w"
    )
    big = sign_checkpoint(Checkpoint(world.settings.audit_origin, 10**6, bytes(32)), [other])
    witness.add_checkpoint(0, [], big)
    witness.log_keys.append(log_key(world))
    server = WitnessServer(witness).start()
    try:
        object.__setattr__(gw.settings, "audit_witnesses", witness.vkey)
        object.__setattr__(gw.settings, "audit_witness_urls", server.url)
        outcome = auditor(world).post("/v1/audit/witness-requests").json()["witnesses"][0]
        assert outcome["stored"] == 0 and "rolled back or forked" in outcome["error"]
    finally:
        server.shutdown()
        server.server_close()
