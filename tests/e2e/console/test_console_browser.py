"""Each role's main task in the console, end to end in Chromium against a served gateway.

Every main page is screenshotted (tests/artifacts/console/), checked for resources from
anywhere but the gateway, and checked with axe-core for serious or critical violations.
"""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest

from tests.e2e.console.conftest import HOSTILE_PURPOSE, Served, check_page, sign_in

pytestmark = pytest.mark.slow
DRAFT = """\
id: enterprises-by-industry
version: 1
kind: aggregate
title: Active enterprises by industry
datasets: [market.enterprise_registry]
parameters:
  since: {type: integer, min: 1990, max: 2025}
sql: |
  SELECT r.industry, COUNT(*) AS enterprises
  FROM market.enterprise_registry AS r
  WHERE r.status = 'active' AND r.established_year >= :since
  GROUP BY r.industry
output: {count_column: enterprises}
"""


def cli_link(served: Served, *args: str) -> str:
    """A sign-in link from the real command, `insitu console-link`."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "console-link",
            "--home",
            str(served.settings.home),
            "--url",
            served.url,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def inbox_total(page: Any) -> int:
    count = page.locator("#inbox-link .count")
    count.wait_for()
    return int(count.inner_text())


def test_analyst_runs_a_template_sees_the_result_and_checks_its_receipt(
    served: Served, new_page: Any
) -> None:
    page = new_page()
    sign_in(page, cli_link(served, "--subject", "analyst@stats", "--role", "analyst"))
    page.goto(f"{served.url}/console/catalogue")
    assert page.get_by_role("cell", name="market.enterprise_registry").first.is_visible()
    page.get_by_label("dataset", exact=True).select_option("market.enterprise_registry")
    page.get_by_label("purpose", exact=True).fill("2026 licensing review")
    page.get_by_role("button", name="Ask the owner").click()
    page.wait_for_url("**/console/catalogue")
    asked = page.locator("tbody tr", has_text="2026 licensing review")
    assert "requested" in asked.inner_text()
    check_page(page, served, "analyst-catalogue")

    page.goto(f"{served.url}/console/templates")
    page.get_by_role("link", name="enterprises-without-tax-filing@1").click()
    assert "NOT EXISTS" in page.locator("pre.sql").inner_text()
    check_page(page, served, "analyst-template")
    year = page.get_by_label("year")
    assert year.get_attribute("type") == "number"
    assert (year.get_attribute("min"), year.get_attribute("max")) == ("2018", "2025")
    year.fill("2024")
    industry = page.get_by_label("industry")
    assert "manufacturing" in industry.locator("option").all_inner_texts()
    industry.select_option("manufacturing")
    page.get_by_role("button", name="Submit job").click()
    page.wait_for_url(re.compile(r".*/console/jobs/[0-9a-f-]{36}$"))
    job_id = page.url.rsplit("/", 1)[1]

    page.locator('[data-status="released"]').wait_for(timeout=120_000)  # htmx polling
    rows = page.locator("table.result tbody tr")
    assert rows.count() > 0
    check_page(page, served, "analyst-result")

    page.get_by_role("button", name="Check the receipt").click()
    verified = page.locator('[data-receipt="verified"]')
    verified.wait_for()
    assert "signed by" in verified.inner_text()
    check_page(page, served, "analyst-receipt")

    page.goto(f"{served.url}/console/jobs")
    assert page.get_by_role("link", name=job_id).is_visible()
    check_page(page, served, "analyst-jobs")

    # A draft: proposed from the console, then tried on synthetic data by its author.
    page.goto(f"{served.url}/console/templates")
    page.get_by_role("link", name="Propose a template").click()
    page.get_by_label("template document (YAML)").fill(DRAFT)
    check_page(page, served, "analyst-propose")
    page.get_by_role("button", name="Propose").click()
    page.wait_for_url("**/console/templates/enterprises-by-industry/versions/1")
    assert page.locator(".badge-proposed").count() == 1
    page.get_by_role("link", name="Try it on synthetic data").click()
    page.locator('[data-preflight="ran"] tbody tr').first.wait_for()
    check_page(page, served, "analyst-preflight")


def test_analyst_runs_a_dp_job_and_sees_intervals_and_the_budget_chart(
    served: Served, new_page: Any
) -> None:
    page = new_page()
    sign_in(
        page, served.link("dp.analyst@stats", "stats", "analyst"), check=(served, "signin-link")
    )
    page.goto(f"{served.url}/console/templates/residents-by-district-dp/versions/1")
    preview = page.locator("[data-cost]")
    assert preview.get_attribute("data-cost") == "0.1"
    assert page.locator("table", has_text="after this job").locator("tbody tr").count() == 1
    check_page(page, served, "analyst-dp-template")
    page.get_by_label("born_since").fill("1960")
    page.get_by_label("purpose").fill("elderly-care planning")
    page.get_by_role("button", name="Submit job").click()
    page.locator('[data-status="released"]').wait_for(timeout=120_000)
    first = page.locator("table.result tbody tr").first
    assert re.search(r"\d ± \d", first.inner_text())
    assert page.locator("table.result .pm").first.get_attribute("title").startswith("95 % interval")
    check_page(page, served, "analyst-dp-result")

    page.goto(f"{served.url}/console/budgets")
    page.locator(".chart svg").first.wait_for()  # drawn by the vendored Vega-Lite
    spent = page.locator("tbody tr", has_text="civil.residents").first.locator("td").nth(4)
    assert float(spent.inner_text()) > 0
    check_page(page, served, "analyst-budgets")


def test_data_owner_approves_a_template_and_a_purpose_with_hostile_text_shown_inert(
    served: Served, new_page: Any
) -> None:
    page = new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sign_in(page, served.link("owner@tax", "tax", "data_owner"))
    page.goto(f"{served.url}/console/approvals")
    assert inbox_total(page) >= 2
    card = page.locator("article.card", has_text="filings-by-year@1")
    assert "GROUP BY t.year" in card.locator("pre.sql").inner_text()
    card.get_by_role("link", name="Try it on synthetic data").click()  # htmx, in place
    tried = card.locator('[data-preflight="ran"]')
    tried.wait_for()
    assert "no real record was read" in tried.inner_text()
    assert tried.locator("tbody tr").count() >= 1
    purpose = page.locator("tbody tr", has_text="gnp.exe")
    text = purpose.inner_text()
    assert "<script>alert(1)</script>" in text  # shown as text, not run
    assert "⟨U+202E⟩" in text and "\u202e" not in text  # the override is visible, not applied
    check_page(page, served, "owner-approvals")

    card.get_by_role("button", name="Approve").click()
    page.wait_for_url("**/console/approvals")
    assert page.locator("article.card", has_text="filings-by-year@1").count() == 0
    page.locator("tbody tr", has_text="gnp.exe").get_by_role("button", name="Approve").click()
    page.wait_for_url("**/console/approvals")
    assert page.locator("tbody tr", has_text="gnp.exe").count() == 0
    assert dialogs == []
    assert HOSTILE_PURPOSE  # the seeded text the page neutralised

    page.goto(f"{served.url}/console/templates/filings-by-year/versions/1")
    assert page.locator(".badge-approved").count() == 1

    # Register a file of the department's data folder, its schema read from the file.
    page.goto(f"{served.url}/console/datasets/new")
    page.get_by_label("file").select_option("inspections.csv")
    page.get_by_role("button", name="Read its schema").click()
    page.get_by_label("title").fill("Inspections")
    page.get_by_label("sensitivity of enterprise_id").select_option("identifier")
    page.get_by_label("sensitivity of year").select_option("public")
    assert page.get_by_role("cell", name="outcome", exact=True).is_visible()
    check_page(page, served, "owner-register")
    page.get_by_role("button", name="Register").click()
    page.wait_for_url("**/console/catalogue**")
    assert page.locator("td#tax\\.inspections").is_visible()


def test_security_officers_propose_and_approve_a_change_four_eyes(
    served: Served, new_page: Any
) -> None:
    first = new_page()
    sign_in(first, served.link("sec1@security", "security", "security_officer"))
    first.goto(f"{served.url}/console/policy")
    assert first.get_by_role("cell", name="data/none/*").first.is_visible()
    check_page(first, served, "officer-policy")
    first.get_by_label("role", exact=True).fill("data_owner")
    first.get_by_label("object", exact=True).fill("job")
    first.get_by_label("action", exact=True).fill("submit")
    first.get_by_label("note").fill("owners may test their own data")
    first.get_by_role("button", name="Propose").click()
    first.wait_for_url(re.compile(r".*/console/policy/proposals/[0-9a-f-]{36}$"))
    proposal_url = first.url
    changed = first.locator("[data-impact-changed]").get_attribute("data-impact-changed")
    assert int(changed or 0) >= 1
    assert first.locator("table.impact tbody tr", has_text="data_owner").count() >= 1
    check_page(first, served, "officer-proposal")

    # The proposer cannot approve its own proposal: the use case refuses, the page says so.
    first.get_by_role("button", name="Approve").click()
    assert first.locator(".problem").is_visible()
    assert "approve" in first.locator(".problem").inner_text()
    check_page(first, served, "officer-refused")

    second = new_page()
    sign_in(second, served.link("sec2@security", "security", "security_officer"))
    second.goto(f"{served.url}/console/policy/proposals")
    assert inbox_total(second) >= 1
    second.goto(proposal_url)
    second.get_by_role("button", name="Approve").click()
    second.wait_for_url(proposal_url)
    assert second.locator(".badge-approved").first.is_visible()
    second.goto(f"{served.url}/console/policy/proposals")
    second.get_by_role("link", name=re.compile(r"^diff with \d+$")).first.click()
    assert second.locator("li.add", has_text="p, data_owner, *, job, submit").is_visible()

    second.goto(f"{served.url}/console/policy/check")
    second.get_by_label("roles").fill("analyst")
    second.get_by_label("department", exact=True).fill("stats")
    second.get_by_label("its name").fill("enterprises-without-tax-filing")
    second.get_by_role("button", name="Check").click()
    answer = second.locator("[data-allowed]")
    answer.wait_for()
    assert answer.get_attribute("data-allowed") == "false"  # no approved purpose named
    assert second.locator("table tbody tr").count() >= 1
    check_page(second, served, "officer-check")


def test_auditor_filters_entries_sees_call_statistics_and_the_log_state(
    served: Served, new_page: Any
) -> None:
    page = new_page()
    sign_in(page, served.link("auditor@audit", "audit", "auditor"))
    page.goto(f"{served.url}/console/audit")
    page.get_by_label("decision").select_option("denied")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**decision=denied**")
    rows = page.locator("table.entries tbody tr")
    assert rows.count() >= 1
    assert all("denied" in t for t in rows.all_inner_texts())
    assert page.locator("table.entries", has_text="job.denied").count() == 1
    check_page(page, served, "auditor-entries")

    page.goto(f"{served.url}/console/audit/stats")
    page.locator(".chart svg").first.wait_for()
    assert page.get_by_role("cell", name="stats").first.is_visible()
    check_page(page, served, "auditor-stats")

    page.goto(f"{served.url}/console/audit/state")
    size = int(page.locator("[data-tree-size]").get_attribute("data-tree-size") or 0)
    assert size > 0
    assert page.locator("pre.note").inner_text().startswith(served.settings.audit_origin)
    check_page(page, served, "auditor-state")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the log as a bundle").click()
    assert download.value.suggested_filename == "audit-bundle.jsonl"
