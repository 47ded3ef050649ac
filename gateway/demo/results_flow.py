"""The demo's issue-18 steps: a quality profile refusing a bad snapshot (数据质量), a comparison
routed to the responsible department (比对), a published result read anonymously and checked
against its receipt (开放不出门). Actors are `gateway.demo.flow.Actor`s."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console

from audit import NoteVerifier, open_checkpoint, verify_consistency, verify_receipt
from gateway.demo import documents

console = Console()


def step(text: str) -> None:
    console.print(f"[bold cyan]▶[/] {text}")


def yaml_post(actor: Any, path: str, document: str) -> Any:
    return actor.ok(
        "POST", path, content=document.encode(), headers={"Content-Type": "application/yaml"}
    )


def run_quality(http: httpx.Client, market: Any, data_dir: Path) -> None:
    step("数据质量: the licences' profile, computed in the sandbox at registration")
    profile = market.ok("GET", "/v1/datasets/market.licences/profile")["current"]
    cols = {c["name"]: c for c in profile["profile"]["columns"]}
    console.print(
        f"  {profile['profile']['rows']:,} rows; enterprise_id: {cols['enterprise_id']['nulls']} "
        f"nulls, {cols['enterprise_id']['distinct']:,} distinct; freshness "
        f"{profile['freshness']['state']}; rules "
        + ", ".join(f"{c['rule']}={'ok' if c['ok'] else 'FAILS'}" for c in profile["checks"])
    )
    step("the market owner stages a new snapshot with a missing and a repeated licence key…")
    good = pq.read_table(data_dir / "market" / "licences.parquet")
    ids = good.column("enterprise_id").to_pylist()
    ids[1], ids[2] = None, ids[3]
    bad = good.set_column(0, "enterprise_id", pa.array(ids, pa.string()))
    pq.write_table(bad, data_dir / "market" / "licences-next.parquet")
    refused = http.post(
        "/v1/datasets/market.licences/snapshots",
        json={"path": "data/market/licences-next.parquet"},
        headers=market.headers,
    )
    if refused.status_code != 422:
        raise RuntimeError(f"the bad snapshot was not refused: {refused.status_code}")
    problem = refused.json()
    console.print(f"  {refused.status_code}: {problem['detail']}")
    for e in problem["errors"]:
        console.print(f"    must {e['rule']} on {e['column']}: {e['observed']} rows break it")
    console.print("  the catalogue keeps serving the previous snapshot; the refusal is audited")


def run_comparison(owners: dict[str, Any], analyst: Any) -> None:
    step("比对: a market-vs-tax comparison whose findings go to the department that corrects them")
    t = yaml_post(analyst, "/v1/templates", documents.COMPARE_TEMPLATE)
    for dept in ("market", "tax"):
        t = owners[dept].ok(
            "POST",
            f"/v1/templates/{t['id']}/versions/1/approvals",
            json={"content_hash": t["content_hash"]},
        )
    job = analyst.ok("POST", "/v1/jobs", json={"template": t["id"], "parameters": {"year": 2024}})
    body = analyst.ok("GET", f"/v1/jobs/{job['id']}/result", params={"wait": 60})
    if body["status"] != "released":
        raise RuntimeError(f"the comparison ended {body['status']}: {body['job'].get('error')}")
    info = body["comparison"]
    console.print(
        f"  the statistics bureau sees counts only: {info['findings']} findings "
        f"«{info['label']}» routed to {info['routed_to']}, in "
        f"{len(body['rows'])} districts (no keys: its own data does not hold them)"
    )
    page = owners["market"].ok("GET", "/v1/findings", params={"limit": 3})
    inbox = page["items"]
    console.print(
        f"  the market regulator's inbox: {page['total']} findings, e.g. "
        + ", ".join(f"{f['key']} ({f['district']})" for f in inbox[:3])
    )
    console.print(f"  the tax bureau's inbox: {owners['tax'].ok('GET', '/v1/findings')['total']}")
    first = inbox[0]["id"]
    owners["market"].ok("POST", f"/v1/findings/{first}/acknowledgements", json={"note": "seen"})
    owners["market"].ok(
        "POST", f"/v1/findings/{first}/closures", json={"note": "licence suspended"}
    )
    states = analyst.ok("GET", "/v1/findings/summary")["items"]
    tally: dict[str, int] = {}
    for s in states:
        tally[s["state"]] = tally.get(s["state"], 0) + s["findings"]
    console.print(f"  after one correction the requester sees states {tally} (all audited)")


def run_open(http: httpx.Client, owners: dict[str, Any], analyst: Any) -> None:
    step("开放不出门: the market owner publishes a released aggregate as an open dataset")
    t = yaml_post(analyst, "/v1/templates", documents.OPEN_TEMPLATE)
    owners["market"].ok(
        "POST",
        f"/v1/templates/{t['id']}/versions/1/approvals",
        json={"content_hash": t["content_hash"]},
    )
    job = analyst.ok(
        "POST", "/v1/jobs", json={"template": t["id"], "parameters": {"status": "valid"}}
    )
    if analyst.ok("GET", f"/v1/jobs/{job['id']}/result", params={"wait": 60})["status"] != (
        "released"
    ):
        raise RuntimeError("the aggregate to publish was not released")
    published = owners["market"].ok(
        "POST",
        "/v1/open/licences-valid",
        json={
            "job": job["id"],
            "title": "Valid business licences by district",
            "licence": "CC-BY-4.0",
            "update_cycle": "monthly",
        },
    )
    console.print(f"  published licences-valid v{published['version']} ({published['open_class']})")
    step("anyone reads it without signing in, and checks it against its receipt")
    public = httpx.Client(base_url=str(http.base_url), timeout=60)  # no token at all
    catalogue = public.get("/open/v1/datasets").json()
    doc = public.get("/open/v1/datasets/licences-valid").json()
    csv = public.get("/open/v1/datasets/licences-valid/data.csv").content
    keys = public.get("/open/v1/audit/keys").json()
    head = public.get("/open/v1/audit/checkpoint").json()
    verifiers = [NoteVerifier.from_vkey(v) for v in keys["vkeys"]]
    receipt = verify_receipt(doc["receipt"], verifiers)
    canonical = json.dumps(doc["result"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    json_ok = receipt.event.details["result_hash"] == (
        "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    )
    csv_ok = receipt.event.details["csv_sha256"] == "sha256:" + hashlib.sha256(csv).hexdigest()
    current = open_checkpoint(head["checkpoint"], verifiers, keys["origin"])
    older = receipt.checkpoint
    if older.size < current.size:
        proof = public.get(
            "/open/v1/audit/proofs/consistency",
            params={"first": older.size, "second": current.size},
        ).json()["proof"]
        hashes = [bytes.fromhex(p) for p in proof]
        verify_consistency(older.size, current.size, hashes, older.root, current.root)
    console.print(
        f"  DCAT catalogue lists {len(catalogue['dcat:dataset'])} dataset(s); "
        f"{len(doc['result']['rows'])} rows; receipt: entry #{receipt.index} "
        f"'{receipt.event.type}' signed by the log key; JSON hash "
        f"{'matches' if json_ok else 'DIFFERS'}, CSV hash {'matches' if csv_ok else 'DIFFERS'}; "
        f"its checkpoint ({older.size}) is consistent with the current one ({current.size})"
    )
    if not (json_ok and csv_ok):
        raise RuntimeError("the published result does not match its receipt")
    usage = public.get("/open/v1/usage").json()
    console.print(
        f"  /open/v1/usage: {len(usage['items'])} figures (calls per day × department × "
        f"dataset), computed at the signed checkpoint of {usage['tree_size']} entries"
    )
    public.close()
