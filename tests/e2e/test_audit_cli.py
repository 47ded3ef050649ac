"""`insitu audit …` as users run it: a subprocess against a served gateway, and offline."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from audit import Signer, cosigner_verifier
from gateway import home
from gateway.api import create_app
from gateway.auth.issuer import LocalIssuer
from gateway.auth.keys import IssuerKeys
from gateway.demo import documents
from gateway.demo.data import write_demo_data
from gateway.demo.server import BackgroundServer
from gateway.settings import Settings
from tests.e2e.test_cli import insitu

WITNESS = "witness.test"
JOB = {
    "template": "enterprises-without-tax-filing",
    "parameters": {"year": 2024, "industry": "retail"},
    "purpose": "audit test",
}


@dataclass
class Served:
    url: str
    home: Path
    issuer: LocalIssuer
    witness_pem: Path
    purposes: list[str] = field(default_factory=list)  # approved, one per conditional dataset

    def token(self, subject: str, department: str, role: str) -> str:
        return self.issuer.issue(subject=subject, department=department, roles=[role], ttl_s=600)

    def call(self, token: str, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        response = httpx.request(method, self.url + path, headers=headers, timeout=120, **kwargs)
        assert response.status_code < 300, response.text
        return response.json()

    def cli(self, token: str, *args: str) -> Any:
        return insitu(*args, env={"INSITU_URL": self.url, "INSITU_TOKEN": token})

    def run_job(self) -> dict[str, Any]:
        analyst = self.token("a@stats", "stats", "analyst")
        job = self.call(analyst, "POST", "/v1/jobs", json={**JOB, "purposes": self.purposes})
        result: dict[str, Any] = self.call(
            analyst, "GET", f"/v1/jobs/{job['id']}/result", params={"wait": 60}
        )
        return result


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    witness = Signer.generate(WITNESS)
    witness_pem = tmp_path / "witness.pem"
    home.write_private(witness_pem, witness.to_pem())
    settings = Settings(
        home=tmp_path / "home", database_url=None, audit_witnesses=cosigner_verifier(witness).vkey
    )
    home.init_home(settings)
    write_demo_data(settings.data_dir, enterprises_n=5_000, residents_n=2_000)
    keys = IssuerKeys.load(settings.keys_dir / home.ISSUER_KEYS)
    issuer = LocalIssuer(keys, issuer=settings.local_issuer, audience=settings.oidc_audience)
    with BackgroundServer(create_app(settings)) as url:
        s = Served(url, settings.home, issuer, witness_pem)
        yaml = {"Content-Type": "application/yaml"}
        for dept, doc in (
            ("market", documents.ENTERPRISE_REGISTRY),
            ("tax", documents.TAX_FILINGS),
        ):
            owner = s.token(f"o@{dept}", dept, "data_owner")
            s.call(owner, "POST", "/v1/datasets", content=doc.encode(), headers=yaml)
        analyst = s.token("a@stats", "stats", "analyst")
        t = s.call(
            analyst,
            "POST",
            "/v1/templates",
            content=documents.NO_FILING_TEMPLATE.encode(),
            headers=yaml,
        )
        for dept in ("market", "tax"):
            s.call(
                s.token(f"o@{dept}", dept, "data_owner"),
                "POST",
                f"/v1/templates/{t['id']}/versions/1/approvals",
                json={"content_hash": t["content_hash"]},
            )
        expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
        for dept, dataset in (("market", "market.enterprise_registry"), ("tax", "tax.filings")):
            asked = s.call(
                analyst, "POST", "/v1/purposes", json={"dataset": dataset, "purpose": "p"}
            )
            s.call(
                s.token(f"o@{dept}", dept, "data_owner"),
                "POST",
                f"/v1/purposes/{asked['id']}/approvals",
                json={"expires_at": expires},
            )  # conditional data needs the owner's approval of the purpose the job names
            s.purposes.append(asked["id"])
        yield s


def ok(out: Any) -> str:
    assert out.returncode == 0, (out.stdout, out.stderr)
    text: str = out.stdout
    return text


@pytest.mark.slow
def test_receipt_prove_tail_stats_export_and_verify(served: Served, tmp_path: Path) -> None:
    body = served.run_job()
    saved = tmp_path / "result.json"
    saved.write_text(json.dumps(body))
    vkey = ok(insitu("audit", "keys", "--home", str(served.home))).split()[0]
    auditor = served.token("au@audit", "audit", "auditor")

    checked = ok(insitu("audit", "receipt", str(saved), "--vkey", vkey))
    assert "matches the logged result hash" in checked
    tampered = dict(body, rows=[[row[0], row[1] + 1] for row in body["rows"]])
    saved.write_text(json.dumps(tampered))
    refused = insitu("audit", "receipt", str(saved), "--vkey", vkey)
    assert refused.returncode == 1 and "not the one the log recorded" in refused.stderr
    stranger = Signer.generate("insitu.local/audit").verifier().vkey
    saved.write_text(json.dumps(body))
    assert insitu("audit", "receipt", str(saved), "--vkey", stranger).returncode == 1

    pin = tmp_path / "pin.note"
    pin.write_text(served.call(auditor, "GET", "/v1/audit/checkpoint")["checkpoint"])
    served.run_job()
    assert "is in the signed tree" in ok(served.cli(auditor, "audit", "prove", "--index", "3"))
    assert "is a prefix of" in ok(served.cli(auditor, "audit", "prove", "--pin", str(pin)))
    assert "job.released" in ok(served.cli(auditor, "audit", "tail", "-n", "30"))
    assert "job.released" in ok(served.cli(auditor, "audit", "tail", "--provider", "tax"))
    stats = ok(served.cli(auditor, "audit", "stats", "--department", "stats"))
    assert "tax.filings" in stats and "total: 4 allowed, 0 denied" in stats
    analyst = served.token("a@stats", "stats", "analyst")
    assert served.cli(analyst, "audit", "stats").returncode == 1  # denied, and audited

    bundle = tmp_path / "bundle.jsonl"
    ok(served.cli(auditor, "audit", "export", str(bundle)))
    assert "ok:" in ok(insitu("audit", "verify", str(bundle), "--vkey", vkey, "--pin", str(pin)))
    lines = bundle.read_text().splitlines(keepends=True)
    lines[-5] = lines[-5].replace('"index":', '"index": ')
    bundle.write_text("".join(lines))
    failed = insitu("audit", "verify", str(bundle), "--vkey", vkey)
    assert failed.returncode == 1 and "FAILED at entry" in failed.stderr


@pytest.mark.slow
def test_witness_cosigns_refuses_a_rollback_and_the_verifier_counts_it(
    served: Served, tmp_path: Path
) -> None:
    vkey = ok(insitu("audit", "keys", "--home", str(served.home))).split()[0]
    witness_vkey = cosigner_verifier(Signer.from_pem(served.witness_pem.read_bytes(), WITNESS)).vkey
    auditor = served.token("au@audit", "audit", "auditor")
    state = tmp_path / "witness-state.json"
    args = ["--state", str(state), "--key", str(served.witness_pem), "--name", WITNESS]
    args += ["--log-vkey", vkey]
    served.call(auditor, "GET", "/v1/audit/stats")  # an audited read: the log grows
    ok(served.cli(auditor, "audit", "witness", *args))
    served.call(auditor, "GET", "/v1/audit/stats")
    assert "cosigned" in ok(served.cli(auditor, "audit", "witness", *args))
    bundle = tmp_path / "b.jsonl"
    ok(served.cli(auditor, "audit", "export", str(bundle)))
    verified = insitu(
        "audit",
        "verify",
        str(bundle),
        "--vkey",
        vkey,
        "--witness",
        witness_vkey,
        "--cosignatures",
        "1",
    )
    assert "witnessed up to size" in ok(verified)
    # the witness remembers a bigger tree than the log now shows: a rollback, refused
    doc = json.loads(state.read_text())
    doc["size"] += 1000
    state.write_text(json.dumps(doc))
    refused = served.cli(auditor, "audit", "witness", *args)
    assert refused.returncode == 1 and "rollback" in refused.stderr


@pytest.mark.slow
def test_rotating_the_signing_key_keeps_old_checkpoints_verifiable(
    served: Served, tmp_path: Path
) -> None:
    served.run_job()
    home_dir = str(served.home)
    before = ok(insitu("audit", "keys", "--home", home_dir)).split()
    ok(insitu("audit", "verify", "--home", home_dir))
    rotated = ok(insitu("audit", "rotate-key", "--home", home_dir))
    assert before[0] in rotated
    after = ok(insitu("audit", "keys", "--home", home_dir)).split()
    assert after[1:] == before and after[0] != before[0]
    assert os.stat(served.home / "keys" / home.AUDIT_KEY).st_mode & 0o077 == 0
    ok(insitu("audit", "verify", "--home", home_dir))  # signs a new head with the new key
    bundle = tmp_path / "b.jsonl"
    ok(insitu("audit", "export", str(bundle), "--home", home_dir))
    ok(insitu("audit", "verify", str(bundle), "--vkey", after[0], "--vkey", after[1]))
    only_new = insitu("audit", "verify", str(bundle), "--vkey", after[0])
    assert only_new.returncode == 1  # the old checkpoints need the retired key
