"""The issue-18 commands against a served gateway: `insitu dataset profile|snapshot`,
`insitu findings list|close`, `insitu apikey issue`, `insitu open publish`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from gateway.demo import documents
from tests.e2e.test_cli import insitu, served

__all__ = ["served"]  # the fixture, used by name


@pytest.mark.slow
def test_quality_findings_and_open_commands(served: tuple[str, Path], tmp_path: Path) -> None:
    url, home_dir = served

    def token(subject: str, dept: str, role: str) -> str:
        out = insitu("token", "issue", "--home", str(home_dir), "--subject", subject,
                     "--department", dept, "--role", role)  # fmt: skip
        return out.stdout.strip()

    def as_(tok: str, *args: str) -> subprocess.CompletedProcess[str]:
        return insitu(*args, env={"INSITU_URL": url, "INSITU_TOKEN": tok})

    market, tax = token("o@market", "market", "data_owner"), token("o@tax", "tax", "data_owner")
    analyst = token("a@stats", "stats", "analyst")
    officer = token("s@sec", "security", "security_officer")
    for name, text in (
        ("licences.yaml", documents.LICENCES),
        ("abnormal.yaml", documents.ABNORMAL_TAXPAYERS),
        ("compare.yaml", documents.COMPARE_TEMPLATE),
        ("open.yaml", documents.OPEN_TEMPLATE),
    ):
        (tmp_path / name).write_text(text)
    assert as_(market, "dataset", "register", str(tmp_path / "licences.yaml")).returncode == 0
    assert as_(tax, "dataset", "register", str(tmp_path / "abnormal.yaml")).returncode == 0
    profile = as_(market, "dataset", "profile", "market.licences")
    assert profile.returncode == 0, profile.stderr
    assert json.loads(profile.stdout)["current"]["profile"]["rows"] == 5_000
    data = home_dir / "data" / "market"
    table = pq.read_table(data / "licences.parquet")
    pq.write_table(table.take([0, 0, 1]), data / "bad.parquet")  # a repeated key
    refused = as_(
        market, "dataset", "snapshot", "market.licences", "--path", "data/market/bad.parquet"
    )
    assert refused.returncode == 2 and "key_unique" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    for doc in ("compare.yaml", "open.yaml"):
        assert as_(analyst, "template", "propose", str(tmp_path / doc)).returncode == 0
    for owner in (market, tax):
        ok = as_(owner, "template", "approve", "licensed-but-not-filing", "1")
        assert ok.returncode == 0, ok.stderr
    assert as_(market, "template", "approve", "licences-by-district", "1").returncode == 0
    run = as_(analyst, "job", "submit", "licensed-but-not-filing", "-p", "year=2024", "--wait")
    assert run.returncode == 0, run.stderr
    listed = as_(market, "findings", "list", "-o", "json")
    findings = json.loads(listed.stdout)
    assert findings and all(f["type"] == "registered_no_tax_filing" for f in findings)
    assert json.loads(as_(tax, "findings", "list", "-o", "json").stdout) == []
    closed = as_(market, "findings", "close", findings[0]["id"], "--note", "licence suspended")
    assert closed.returncode == 0 and "closed" in closed.stdout
    key = as_(officer, "apikey", "issue", "app_x", "--per-minute", "100")
    assert key.returncode == 0 and key.stdout.strip().startswith("isk_")
    headers = {"Authorization": f"Bearer {analyst}"}
    submission = {"template": "licences-by-district", "parameters": {"status": "valid"}}
    job = httpx.post(f"{url}/v1/jobs", headers=headers, json=submission)
    job_id = job.json()["id"]
    httpx.get(f"{url}/v1/jobs/{job_id}/result", params={"wait": 60}, headers=headers, timeout=90)
    published = as_(market, "open", "publish", "licences-valid", "--job", job_id, "--title", "T")
    assert published.returncode == 0 and "v1" in published.stdout, published.stderr
    read = httpx.get(f"{url}/open/v1/datasets/licences-valid",
                     headers={"X-API-Key": key.stdout.strip()})  # fmt: skip
    assert read.status_code == 200 and read.json()["version"] == 1
