"""A served gateway with the demo's synthetic data, and a real Chromium driven by Playwright.

The gateway is seeded over its HTTP API (as the demo does): datasets registered by their
owners, the cross-department template approved with its purposes, the DP template approved, a
template and a purpose left pending for the tax owner, one denied job for the auditor.
Outside CI a missing Chromium or Playwright skips these tests; under CI=true it fails them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway import home
from gateway.api import create_app
from gateway.auth.issuer import LocalIssuer
from gateway.auth.keys import IssuerKeys
from gateway.console import sessions
from gateway.demo import documents
from gateway.demo.data import write_demo_data
from gateway.demo.server import BackgroundServer
from gateway.settings import Settings

CHROMIUM = os.environ.get("INSITU_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "tests" / "artifacts" / "console"
AXE = Path(__file__).with_name("vendor") / "axe-4.14.1.min.js"

PENDING_TEMPLATE = """\
id: filings-by-year
version: 1
kind: aggregate
title: Tax filings per year
datasets: [tax.filings]
parameters:
  since: {type: integer, min: 2015, max: 2030}
sql: |
  SELECT t.year, COUNT(*) AS filings
  FROM tax.filings AS t
  WHERE t.year >= :since
  GROUP BY t.year
output: {count_column: filings}
"""
# Free text as an attacker would write it: markup and a right-to-left override.
HOSTILE_PURPOSE = "audit <script>alert(1)</script> of \u202egnp.exe filings"


def _browser_or_skip() -> None:
    missing = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "playwright is not installed"
    if missing is None and not Path(CHROMIUM).exists():
        missing = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests must run in CI: {missing}")
        pytest.skip(missing)


class Actor:
    def __init__(self, http: httpx.Client, token: str) -> None:
        self.http, self.headers = http, {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, headers=self.headers, **kwargs)

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.call(method, path, **kwargs)
        assert response.status_code < 300, response.text
        return response.json()

    def document(self, path: str, text: str) -> Any:
        response = self.http.post(
            path, content=text, headers={**self.headers, "Content-Type": "application/yaml"}
        )
        assert response.status_code == 201, response.text
        return response.json()


@dataclass
class Served:
    url: str
    settings: Settings
    purposes: list[str]

    def link(self, subject: str, department: str, *roles: str) -> str:
        """A one-time sign-in link, as `insitu console-link` writes it."""
        who = sessions.identity(subject, department, list(roles))
        secret = sessions.issue_link_at(self.settings.resolved_database_url, who, ttl_s=300)
        return sessions.link_url(self.url, secret)


def _seed(http: httpx.Client, issuer: LocalIssuer) -> list[str]:
    def actor(subject: str, department: str, role: str) -> Actor:
        token = issuer.issue(subject=subject, department=department, roles=[role], ttl_s=3600)
        return Actor(http, token)

    owners = {d: actor(f"owner@{d}", d, "data_owner") for d in ("market", "tax", "civil")}
    analyst = actor("analyst@stats", "stats", "analyst")
    for dept, doc in (
        ("market", documents.ENTERPRISE_REGISTRY),
        ("tax", documents.TAX_FILINGS),
        ("civil", documents.RESIDENTS + documents.RESIDENTS_PRIVACY),
    ):
        owners[dept].document("/v1/datasets", doc)
    template = analyst.document("/v1/templates", documents.NO_FILING_TEMPLATE)
    for dept in ("market", "tax"):
        owners[dept].ok(
            "POST",
            f"/v1/templates/{template['id']}/versions/1/approvals",
            json={"content_hash": template["content_hash"]},
        )
    approved = []
    for dept, dataset in (("market", "market.enterprise_registry"), ("tax", "tax.filings")):
        asked = analyst.ok(
            "POST", "/v1/purposes", json={"dataset": dataset, "purpose": "2025 compliance"}
        )
        expires = (datetime.now(UTC) + timedelta(days=90)).isoformat()
        owners[dept].ok(
            "POST", f"/v1/purposes/{asked['id']}/approvals", json={"expires_at": expires}
        )
        approved.append(asked["id"])
    dp = analyst.document("/v1/templates", documents.DP_TEMPLATE)
    owners["civil"].ok(
        "POST",
        f"/v1/templates/{dp['id']}/versions/1/approvals",
        json={"content_hash": dp["content_hash"]},
    )
    # Left for the tax owner's browser: a template and a purpose with hostile free text.
    analyst.document("/v1/templates", PENDING_TEMPLATE)
    analyst.ok("POST", "/v1/purposes", json={"dataset": "tax.filings", "purpose": HOSTILE_PURPOSE})
    # One denial for the auditor to find.
    denied = analyst.call("POST", "/v1/jobs", json={"template": "no-such-template"})
    assert denied.status_code == 403, denied.text
    return approved


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    _browser_or_skip()
    root = tmp_path_factory.mktemp("console")
    settings = Settings(
        home=root / "home",
        console_insecure_http_cookies=True,  # plain http on loopback
        workers=1,
    )
    home.init_home(settings)
    write_demo_data(settings.data_dir)
    (settings.data_dir / "tax" / "inspections.csv").write_text(
        "enterprise_id,year,outcome\n"
        + "".join(f"E{i:05d},{2018 + i % 7},{'pass' if i % 3 else 'fail'}\n" for i in range(300))
    )
    keys = IssuerKeys.load(settings.keys_dir / home.ISSUER_KEYS)
    issuer = LocalIssuer(keys, issuer=settings.local_issuer, audience=settings.oidc_audience)
    with BackgroundServer(create_app(settings)) as url:
        with httpx.Client(base_url=url, timeout=120) as http:
            purposes = _seed(http, issuer)
        yield Served(url, settings, purposes)


@pytest.fixture(scope="module")
def browser(served: Served) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser: Any, served: Served) -> Iterator[Any]:
    """`new_page()` opens a page in a fresh browser context (its own cookies); every request
    it makes is recorded, so a test can show nothing was loaded from anywhere else."""
    contexts = []

    def make() -> Any:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.requested = []
        page.on("request", lambda request: page.requested.append(request.url))
        page.set_default_timeout(30_000)
        return page

    yield make
    for context in contexts:
        context.close()


def sign_in(page: Any, link: str, *, check: tuple[Served, str] | None = None) -> None:
    page.goto(link)
    if check is not None:
        check_page(page, *check)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/**")
    page.wait_for_load_state("networkidle")


def check_page(page: Any, served: Served, name: str) -> None:
    """A screenshot kept as a test artefact, every request to the gateway itself, and no
    serious or critical accessibility violation (axe-core, run in the page)."""
    page.wait_for_load_state("networkidle")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    foreign = [u for u in page.requested if not u.startswith((served.url, "data:", "about:"))]
    assert foreign == [], f"{name} loaded resources from elsewhere: {foreign}"
    page.evaluate(AXE.read_text())
    violations = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
             .map(v => ({id: v.id, impact: v.impact, help: v.help,
                         nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}))"""
    )
    serious = [v for v in violations if v["impact"] in {"serious", "critical"}]
    assert serious == [], f"{name}: accessibility violations {serious}"
