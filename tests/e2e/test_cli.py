"""The `insitu` command as users run it: a subprocess, against a served gateway."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import home
from gateway.api import create_app
from gateway.demo import documents
from gateway.demo.data import write_demo_data
from gateway.demo.server import BackgroundServer
from gateway.settings import Settings


def insitu(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("INSITU_")}
    full_env.update({"COLUMNS": "200", **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_init_creates_private_keys_and_is_idempotent(tmp_path: Path) -> None:
    first = insitu("init", "--home", str(tmp_path / "h"))
    assert first.returncode == 0, first.stderr
    # population.key too: made at init, so a home copied to a replica carries the same one
    for name in (home.ISSUER_KEYS, home.AUDIT_KEY, home.FINGERPRINT_KEY, "population.key"):
        mode = stat.S_IMODE((tmp_path / "h" / "keys" / name).stat().st_mode)
        assert mode == 0o600, name
    second = insitu("init", "--home", str(tmp_path / "h"))
    assert second.returncode == 0
    assert "already initialised" in second.stdout


@pytest.mark.slow
def test_serve_with_a_malformed_issuer_key_says_so_in_one_line(tmp_path: Path) -> None:
    assert insitu("init", "--home", str(tmp_path / "h")).returncode == 0
    (tmp_path / "h" / "keys" / home.ISSUER_KEYS).write_text("garbage")
    out = insitu("serve", "--home", str(tmp_path / "h"), "--port", "1")
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1
    assert "malformed" in out.stderr
    assert "internal error" not in out.stderr


@pytest.mark.slow
def test_token_issue_prints_the_token_alone(tmp_path: Path) -> None:
    insitu("init", "--home", str(tmp_path))
    out = insitu(
        "token",
        "issue",
        "--home",
        str(tmp_path),
        "--subject",
        "a@stats",
        "--department",
        "stats",
        "--role",
        "analyst",
        "--ttl",
        "60",
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 1 and lines[0].count(".") == 2


@pytest.mark.parametrize(
    "args",
    [
        ("token", "issue", "--subject", "a"),
        ("job", "submit"),
        ("no-such-command",),
        ("job", "submit", "x", "--param", "novalue"),
    ],
)
@pytest.mark.slow
def test_usage_errors_exit_2_with_one_line(args: tuple[str, ...], tmp_path: Path) -> None:
    out = insitu(*args, env={"INSITU_HOME": str(tmp_path), "INSITU_URL": "http://127.0.0.1:9"})
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_spark_without_a_remote_is_refused_not_ignored(tmp_path: Path) -> None:
    """A deployment asking for Spark must not run on DuckDB without noticing."""
    for command in (("init",), ("serve",)):
        out = insitu(*command, env={"INSITU_HOME": str(tmp_path), "INSITU_ENGINE": "spark"})
        assert out.returncode == 2, (out.stdout, out.stderr)
        assert out.stderr.strip().splitlines() == [
            "insitu: bad setting : Value error, engine spark needs INSITU_SPARK_REMOTE "
            "(sc://host:15002)"
        ]
    out = insitu(
        "init",
        env={
            "INSITU_HOME": str(tmp_path),
            "INSITU_ENGINE": "spark",
            "INSITU_SPARK_REMOTE": "sc://spark:15002/;token=secret",
        },
    )
    assert out.returncode == 2 and "secret" not in out.stderr, out.stderr
    assert not (tmp_path / "keys").exists()  # nothing was created


@pytest.mark.slow
def test_bad_token_subject_is_a_usage_error(tmp_path: Path) -> None:
    insitu("init", "--home", str(tmp_path))
    out = insitu(
        "token",
        "issue",
        "--home",
        str(tmp_path),
        "--subject",
        "a b",
        "--department",
        "stats",
        "--role",
        "analyst",
    )
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    settings = Settings(home=tmp_path / "home", database_url=None)
    home.init_home(settings)
    write_demo_data(settings.data_dir, enterprises_n=5_000, residents_n=2_000)
    with BackgroundServer(create_app(settings)) as url:
        yield url, settings.home


@pytest.mark.slow
def test_cli_runs_the_job_path_against_a_served_gateway(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    url, home_dir = served

    def token(subject: str, dept: str, role: str) -> str:
        out = insitu(
            "token",
            "issue",
            "--home",
            str(home_dir),
            "--subject",
            subject,
            "--department",
            dept,
            "--role",
            role,
        )
        return out.stdout.strip()

    def as_(tok: str, *args: str) -> subprocess.CompletedProcess[str]:
        return insitu(*args, env={"INSITU_URL": url, "INSITU_TOKEN": tok})

    docs = {}
    for name, text in (
        ("market.yaml", documents.ENTERPRISE_REGISTRY),
        ("tax.yaml", documents.TAX_FILINGS),
        ("template.yaml", documents.NO_FILING_TEMPLATE),
    ):
        docs[name] = tmp_path / name
        docs[name].write_text(text)
    market, tax = token("o@market", "market", "data_owner"), token("o@tax", "tax", "data_owner")
    analyst = token("a@stats", "stats", "analyst")
    assert as_(market, "dataset", "register", str(docs["market.yaml"])).returncode == 0
    assert as_(tax, "dataset", "register", str(docs["tax.yaml"])).returncode == 0
    proposed = as_(analyst, "template", "propose", str(docs["template.yaml"]))
    assert proposed.returncode == 0, proposed.stderr
    # the analyst cannot approve: exit 1 (denied), one line
    denied = as_(analyst, "template", "approve", "enterprises-without-tax-filing", "1")
    assert denied.returncode == 1 and len(denied.stderr.strip().splitlines()) == 1
    for owner in (market, tax):
        ok = as_(owner, "template", "approve", "enterprises-without-tax-filing", "1")
        assert ok.returncode == 0, ok.stderr
    approved = []
    for owner, dataset in ((market, "market.enterprise_registry"), (tax, "tax.filings")):
        asked = as_(analyst, "purpose", "request", dataset, "--purpose", "compliance")
        assert asked.returncode == 0, asked.stderr
        ok = as_(owner, "purpose", "approve", asked.stdout.strip(), "--days", "30")
        assert ok.returncode == 0, ok.stderr
        approved.append(asked.stdout.strip())
    # a description alone is not the owner's approval (有条件共享): refused, one line, exit 1
    described = as_(
        analyst,
        "job",
        "submit",
        "enterprises-without-tax-filing",
        "-p",
        "year=2024",
        "-p",
        "industry=retail",
        "--purpose",
        "test",
    )
    assert described.returncode == 1 and "approved" in described.stderr
    run = as_(
        analyst,
        "job",
        "submit",
        "enterprises-without-tax-filing",
        "-p",
        "year=2024",
        "-p",
        "industry=retail",
        "--purpose",
        approved[0],
        "--purpose",
        approved[1],
        "--wait",
    )
    assert run.returncode == 0, run.stderr
    assert "district" in run.stdout and "receipt" in run.stdout
    bad = as_(
        analyst,
        "job",
        "submit",
        "enterprises-without-tax-filing",
        "-p",
        "year=1900",
        "-p",
        "industry=retail",
        "--purpose",
        approved[0],
        "--purpose",
        approved[1],
    )
    assert bad.returncode == 2 and "year" in bad.stderr
    # 核验 on the not-shared residents: pre-flight, approval, one yes/no per key
    civil = token("o@civil", "civil", "data_owner")
    for name, text in (("civil.yaml", documents.RESIDENTS), ("v.yaml", documents.VERIFY_TEMPLATE)):
        (tmp_path / name).write_text(text)
    assert as_(civil, "dataset", "register", str(tmp_path / "civil.yaml")).returncode == 0
    assert as_(analyst, "template", "propose", str(tmp_path / "v.yaml")).returncode == 0
    pre = as_(civil, "template", "preflight", "resident-of-district", "1")
    assert pre.returncode == 0 and "synthetic" in pre.stdout, pre.stderr
    assert as_(civil, "template", "approve", "resident-of-district", "1").returncode == 0
    checked = as_(analyst, "verify", "run", "resident-of-district", "P000000001", "P999999999",
                  "--key-name", "person_id", "-p", "district=chaoyang")  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert "P999999999" in checked.stdout and "no" in checked.stdout
    retired = as_(analyst, "template", "retire", "resident-of-district", "1")
    assert retired.returncode == 0 and "retired" in retired.stdout, retired.stderr
    gone = as_(analyst, "template", "show", "resident-of-district", "1")
    assert gone.returncode == 2 and "410" in gone.stderr
    verified = insitu("audit", "verify", "--home", str(home_dir))
    assert verified.returncode == 0, verified.stderr

    # one changed byte in one stored entry, and verification fails naming it
    with sqlite3.connect(home_dir / "insitu.db") as conn:
        body = conn.execute("SELECT body FROM audit_entries WHERE idx = 3").fetchone()[0]
        edited = body[:-2] + bytes([body[-2] ^ 1]) + body[-1:]
        conn.execute("UPDATE audit_entries SET body = ? WHERE idx = 3", (edited,))
    tampered = insitu("audit", "verify", "--home", str(home_dir))
    assert tampered.returncode == 1
    assert "entry 3" in tampered.stderr
