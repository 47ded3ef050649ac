"""The demo, step by step, over real HTTP with real tokens."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from audit import SqlAuditLog
from gateway import home
from gateway.api import create_app
from gateway.auth.issuer import LocalIssuer
from gateway.auth.keys import IssuerKeys
from gateway.demo import documents, results_flow
from gateway.demo.data import write_demo_data
from gateway.demo.server import BackgroundServer
from gateway.settings import Settings
from gateway.store import db

MARKER = ".insitu-demo"
console = Console()


class DemoError(Exception):
    pass


def fresh_home(path: Path) -> None:
    """The demo owns its home: it may only wipe a directory it created itself."""
    if path.exists():
        if not (path / MARKER).exists():
            raise DemoError(f"{path} exists and is not a demo home; pass another --home")
        shutil.rmtree(path)
    path.mkdir(parents=True, mode=0o700)
    (path / MARKER).write_text("created by `insitu demo`; removed and recreated on each run\n")


def step(text: str) -> None:
    console.print(f"[bold cyan]▶[/] {text}")


class Actor:
    def __init__(self, http: httpx.Client, token: str) -> None:
        self.http = http
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.http.request(method, path, headers=headers, **kwargs)

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.call(method, path, **kwargs)
        if response.status_code >= 400:
            raise DemoError(f"{method} {path} answered {response.status_code}: {response.text}")
        return response.json()


def yaml_post(actor: Actor, path: str, document: str) -> Any:
    return actor.ok(
        "POST", path, content=document.encode(), headers={"Content-Type": "application/yaml"}
    )


def show_result(body: dict[str, Any]) -> None:
    table = Table(title="Active manufacturing enterprises with no 2024 tax filing, by district")
    for column in body["columns"]:
        table.add_column(column, justify="right" if column == "enterprises" else "left")
    for row in sorted(body["rows"], key=lambda r: -int(r[1])):
        table.add_row(*(str(v) for v in row))
    console.print(table)
    for cell in body["withheld"]:
        key = ", ".join(f"{k}={v}" for k, v in cell["key"].items())
        console.print(f"  withheld: {key} — {cell['reason']} (rule {cell['rule']})")
    receipt = body["receipt"]
    console.print(
        f"  receipt: audit entry #{receipt['audit_index']} in a tree of {receipt['tree_size']}, "
        f"inclusion proof of {len(receipt['inclusion_proof'])} hashes, signed checkpoint"
    )


def register_and_approve(owners: dict[str, Actor], analyst: Actor) -> list[str]:
    """Register the datasets, approve the main template and its purposes; the purpose ids."""
    step("each provider's data owner registers its datasets")
    for dept, doc in (
        ("market", documents.ENTERPRISE_REGISTRY),
        ("tax", documents.TAX_FILINGS),
        ("civil", documents.RESIDENTS + documents.RESIDENTS_PRIVACY),
        ("market", documents.LICENCES),
        ("tax", documents.ABNORMAL_TAXPAYERS),
    ):
        ds = yaml_post(owners[dept], "/v1/datasets", doc)
        label = ds["catalogue"]["share_class_label"]
        console.print(f"  {ds['id']}: {ds['share_class']} share ({label}), {ds['classification']}")
    step("a statistics-bureau analyst proposes a cross-department template")
    t = yaml_post(analyst, "/v1/templates", documents.NO_FILING_TEMPLATE)
    console.print(f"  {t['id']}@{t['version']} {t['content_hash'][:23]}… {t['status']}")
    step("the market and tax data owners review and approve it (bound to its hash)")
    for dept in ("market", "tax"):
        t = owners[dept].ok(
            "POST",
            f"/v1/templates/{t['id']}/versions/1/approvals",
            json={"content_hash": t["content_hash"], "comment": "reviewed"},
        )
        console.print(f"  {dept} approved → {t['status']}")
    step("both datasets are shared on condition (有条件共享): each owner approves a purpose")
    expires = (datetime.now(UTC) + timedelta(days=90)).isoformat()
    approved = []
    for dept, dataset in (("market", "market.enterprise_registry"), ("tax", "tax.filings")):
        asked = analyst.ok(
            "POST",
            "/v1/purposes",
            json={"dataset": dataset, "purpose": "2025 filing-compliance campaign"},
        )
        done = owners[dept].ok(
            "POST", f"/v1/purposes/{asked['id']}/approvals", json={"expires_at": expires}
        )
        console.print(
            f"  {dataset}: purpose {done['id']} {done['status']} until {done['expires_at'][:10]}"
        )
        approved.append(done["id"])
    return approved


def run_main_job(analyst: Actor, purposes: list[str]) -> None:
    step("the analyst submits a job with bound parameters, naming the approved purposes")
    job = analyst.ok(
        "POST",
        "/v1/jobs",
        json={
            "template": "enterprises-without-tax-filing",
            "parameters": {"year": 2024, "industry": "manufacturing"},
            "purpose": purposes[0],
            "purposes": purposes[1:],
        },
    )
    console.print(f"  job {job['id']} {job['status']}")
    result = analyst.ok("GET", f"/v1/jobs/{job['id']}/result", params={"wait": 60})
    if result["status"] != "released":
        raise DemoError(f"the job ended {result['status']}: {result['job'].get('error')}")
    show_result(result)


def show_denial(owners: dict[str, Actor], analyst: Actor) -> None:
    step("a template over residents (不予共享: not shared) is approved by its owner…")
    r = yaml_post(analyst, "/v1/templates", documents.RESIDENTS_TEMPLATE)
    owners["civil"].ok(
        "POST",
        f"/v1/templates/{r['id']}/versions/1/approvals",
        json={"content_hash": r["content_hash"]},
    )
    step("…but not-shared data answers only verify and dp templates: the job is denied")
    denied = analyst.call(
        "POST",
        "/v1/jobs",
        json={
            "template": r["id"],
            "parameters": {"born_since": 1990},
            "purpose": "housing demand estimate",
        },
    )
    problem = denied.json()
    console.print(f"  {denied.status_code} {problem['title']}: {problem['detail']}")
    rule = problem.get("rule") or "share class 不予共享 admits only verify and dp"
    console.print(f"  deciding rule: {rule}; policy version {problem.get('policy_version')}")
    if denied.status_code != 403:
        raise DemoError("the residents job should have been denied")


def run_verification(owners: dict[str, Actor], analyst: Actor, residents: Path) -> None:
    step("核验: verify residency of people the requester already holds, on not-shared data")
    t = yaml_post(analyst, "/v1/templates", documents.VERIFY_TEMPLATE)
    pre = owners["civil"].ok("GET", f"/v1/templates/{t['id']}/versions/1/preflight")
    answers = ", ".join("yes" if r[1] else "no" for r in pre["rows"])
    console.print(
        f"  the civil owner reviews a pre-flight on synthetic data (no real record read): "
        f"{len(pre['rows'])} made-up keys answered {answers}"
    )
    owners["civil"].ok(
        "POST",
        f"/v1/templates/{t['id']}/versions/1/approvals",
        json={"content_hash": t["content_hash"]},
    )
    people = pq.read_table(residents, columns=["person_id", "district"]).to_pylist()
    inside = [p["person_id"] for p in people if p["district"] == "haidian"][:3]
    outside = next(p["person_id"] for p in people if p["district"] != "haidian")
    keys = [inside[0], outside, inside[1], "P999999999", inside[2]]
    job = analyst.ok(
        "POST",
        "/v1/jobs",
        json={
            "template": t["id"],
            "parameters": {"district": "haidian", "person_id": keys},
            "purpose": "housing-benefit eligibility",
        },
    )
    body = analyst.ok("GET", f"/v1/jobs/{job['id']}/result", params={"wait": 60})
    if body["status"] != "released":
        raise DemoError(f"the verification ended {body['status']}: {body['job'].get('error')}")
    table = Table(title="Registered residents of haidian? (one bit per key; nothing else leaves)")
    table.add_column("key the requester holds")
    table.add_column("match")
    for index, matched in body["rows"]:
        table.add_row(keys[index - 1], "yes" if matched else "no")
    console.print(table)
    console.print("  every key is in the audit log as a keyed fingerprint, never as its value")


def run_list(owners: dict[str, Actor], analyst: Actor) -> None:
    step("a list template: enterprise codes (not personal data) from a licence-vs-tax comparison")
    t = yaml_post(analyst, "/v1/templates", documents.LIST_TEMPLATE)
    for dept in ("market", "tax"):
        t = owners[dept].ok(
            "POST",
            f"/v1/templates/{t['id']}/versions/1/approvals",
            json={"content_hash": t["content_hash"]},
        )
        console.print(f"  {dept} approved → {t['status']}")
    job = analyst.ok(
        "POST",
        "/v1/jobs",
        json={"template": t["id"], "parameters": {"district": "mentougou", "year": 2024}},
    )
    body = analyst.ok("GET", f"/v1/jobs/{job['id']}/result", params={"wait": 60})
    if body["status"] != "released":
        raise DemoError(f"the list job ended {body['status']}: {body['job'].get('error')}")
    shown = body["rows"][:4]
    console.print(
        f"  {len(body['rows'])} licensed enterprises in mentougou were abnormal taxpayers in "
        f"2024, e.g. {', '.join(r[0] for r in shown)} …"
    )


def run_dp(owners: dict[str, Actor], analyst: Actor) -> None:
    step("差分隐私: residents by district on not-shared data, noise from OpenDP, budget charged")
    t = yaml_post(analyst, "/v1/templates", documents.DP_TEMPLATE)
    owners["civil"].ok(
        "POST",
        f"/v1/templates/{t['id']}/versions/1/approvals",
        json={"content_hash": t["content_hash"]},
    )
    job = analyst.ok(
        "POST",
        "/v1/jobs",
        json={
            "template": t["id"],
            "parameters": {"born_since": 1960},
            "purpose": "elderly-care planning",
        },
    )
    body = analyst.ok("GET", f"/v1/jobs/{job['id']}/result", params={"wait": 60})
    if body["status"] != "released":
        raise DemoError(f"the dp job ended {body['status']}: {body['job'].get('error')}")
    columns, rows, intervals = body["columns"], body["rows"], body["intervals"]
    table = Table(title="Residents born since 1960, DP (ρ = 0.1; ± half the 95 % interval)")
    for column in columns:
        table.add_column(column, justify="left" if column == "district" else "right")
    for i in sorted(range(len(rows)), key=lambda i: str(rows[i][0]))[:6]:
        cells = [str(rows[i][0])]
        for column, value in zip(columns[1:], rows[i][1:], strict=True):
            pair = intervals[column][i]
            half = "" if pair is None else f" ± {(pair[1] - pair[0]) / 2:,.0f}"
            cells.append(f"{value:,.0f}{half}")
        table.add_row(*cells)
    console.print(table)
    mine = [
        b for b in analyst.ok("GET", "/v1/budgets")["budgets"] if b["dataset"] == "civil.residents"
    ]
    for b in mine:
        console.print(
            f"  budget of {b['department']} on {b['dataset']} ({b['period']}): "
            f"ρ spent {b['rho']['spent']} of {b['rho']['cap']}, remaining {b['rho']['remaining']}"
        )


def verify_log(settings: Settings) -> None:
    step("verifying the audit log from the store (every entry, the tree, every checkpoint)")
    engine = db.create_engine(settings.resolved_database_url)
    log = SqlAuditLog(origin=settings.audit_origin, signer=home.load_signer(settings))
    try:
        with engine.begin() as conn:
            log.checkpoint(conn)
            report = log.verify(conn)
    finally:
        engine.dispose()
    console.print(f"  {report}")


def print_next(home_dir: Path, purposes: list[str]) -> None:
    named = " ".join(f"--purpose {p}" for p in purposes)
    console.print(
        "\nTry next:\n"
        f"  insitu demo --serve --port 8000   # keep the gateway running on {home_dir}\n"
        "  export INSITU_URL=http://127.0.0.1:8000\n"
        f"  export INSITU_TOKEN=$(insitu token issue --home {home_dir} --subject me@stats "
        "--department stats --role analyst)\n"
        "  insitu template list; insitu purpose list\n"
        "  insitu job submit enterprises-without-tax-filing -p year=2023 -p industry=retail "
        f"{named} --wait\n"
        f"  insitu audit verify --home {home_dir}\n"
        f"  insitu console-link --home {home_dir} --subject analyst@stats --role analyst"
        "   # the web console",
        markup=False,
    )


def run_demo(home_dir: Path, *, serve: bool = False, port: int = 0) -> None:
    started = time.monotonic()
    settings = Settings(home=home_dir, database_url=None)
    engine = "DuckDB" if settings.engine == "duckdb" else f"Spark at {settings.spark_remote}"
    step(f"creating a demo home at {home_dir} (SQLite + {engine} + local token issuer)")
    fresh_home(home_dir)
    home.init_home(settings)
    data = write_demo_data(settings.data_dir)
    console.print(
        f"  synthetic data: {data.rows['market']:,} enterprises (market), "
        f"{data.rows['tax']:,} tax filings (tax), {data.rows['civil']:,} residents (civil)"
    )
    keys = IssuerKeys.load(settings.keys_dir / home.ISSUER_KEYS)
    issuer = LocalIssuer(keys, issuer=settings.local_issuer, audience=settings.oidc_audience)

    def actor(http: httpx.Client, subject: str, department: str, role: str) -> Actor:
        token = issuer.issue(subject=subject, department=department, roles=[role], ttl_s=3600)
        return Actor(http, token)

    server = BackgroundServer(create_app(settings), port=port, settings=settings)
    url = server.start()
    try:
        step(f"gateway listening on {url}")
        with httpx.Client(base_url=url, timeout=120) as http:
            owners = {
                d: actor(http, f"owner@{d}", d, "data_owner") for d in ("market", "tax", "civil")
            }
            analyst = actor(http, "analyst@stats", "stats", "analyst")
            purposes = register_and_approve(owners, analyst)
            run_main_job(analyst, purposes)
            run_verification(owners, analyst, data.residents)
            run_list(owners, analyst)
            show_denial(owners, analyst)
            run_dp(owners, analyst)
            results_flow.run_quality(http, owners["market"], settings.data_dir)
            results_flow.run_comparison(owners, analyst)
            results_flow.run_open(http, owners, analyst)
    finally:
        if not serve:
            server.stop()
    verify_log(settings)
    console.print(f"[bold green]done[/] in {time.monotonic() - started:.1f} s")
    print_next(home_dir, purposes)
    if serve:
        console.print(f"\nserving on {url}; Ctrl-C to stop")
        try:
            while server.thread.is_alive():
                server.thread.join(timeout=1)
        except KeyboardInterrupt:
            server.stop()
