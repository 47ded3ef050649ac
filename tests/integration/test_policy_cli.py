"""`insitu policy …` against a served gateway over real HTTP: the command's own `main()` (exit
codes, one-line errors) run in this process, which keeps the test fast."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway import home
from gateway.api import create_app
from gateway.auth.issuer import LocalIssuer
from gateway.auth.keys import IssuerKeys
from gateway.cli import main, policy_cmds
from gateway.cli.client import Client
from gateway.demo.server import BackgroundServer
from gateway.settings import Settings


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, LocalIssuer]]:
    settings = Settings(home=tmp_path / "home", database_url=None, workers=1)
    home.init_home(settings)
    keys = IssuerKeys.load(settings.keys_dir / home.ISSUER_KEYS)
    issuer = LocalIssuer(keys, issuer=settings.local_issuer, audience=settings.oidc_audience)
    with BackgroundServer(create_app(settings)) as url:
        yield url, issuer


def test_the_policy_commands_run_a_four_eyes_change_end_to_end(
    served: tuple[str, LocalIssuer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, issuer = served
    tokens = {
        name: issuer.issue(
            subject=f"{name}@security", department="security", roles=["security_officer"]
        )
        for name in ("alice", "bob")
    }

    monkeypatch.setenv("INSITU_URL", url)
    monkeypatch.setenv("COLUMNS", "200")
    # A command's HTTP client lives as long as its process; here the process goes on, so each
    # client is closed when its command returns.
    made: list[Client] = []

    class Closing(Client):
        def __init__(self) -> None:
            super().__init__()
            made.append(self)

    monkeypatch.setattr(policy_cmds, "Client", Closing)

    def insitu(who: str, *args: str) -> Run:
        monkeypatch.setenv("INSITU_TOKEN", tokens[who])
        monkeypatch.setattr(sys, "argv", ["insitu", "policy", *args])
        capsys.readouterr()
        try:
            with pytest.raises(SystemExit) as exited:
                main()
        finally:
            for client in made:
                client._http.close()
            made.clear()
        out = capsys.readouterr()
        return Run(int(exited.value.code or 0), out.out, out.err)

    listed = insitu("alice", "list")
    assert listed.returncode == 0 and "policy version 1" in listed.stdout
    assert "p, analyst, *, job, submit" in listed.stdout

    bad = insitu("alice", "propose", "--add", "p, analyst or True, *, job, read")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1

    proposed = insitu("alice", "propose", "--remove", "p, analyst, *, job, submit", "--note", "x")
    assert proposed.returncode == 0, proposed.stderr
    assert "- p, analyst, *, job, submit" in proposed.stdout
    proposal = proposed.stdout.split()[1]
    assert len(proposal) == 36
    assert proposal in insitu("bob", "proposals", "--status", "proposed").stdout

    own = insitu("alice", "approve", proposal)
    assert own.returncode == 1 and "four eyes" in own.stderr
    approved = insitu("bob", "approve", proposal)
    assert approved.returncode == 0, approved.stderr
    assert "policy version 2 is live" in approved.stdout

    denied = insitu(
        "alice", "test", "--role", "analyst", "--department", "stats", "--object", "job",
        "--action", "submit",
    )  # fmt: skip
    assert denied.returncode == 1 and "deny [missing_role] (policy v2)" in denied.stdout

    history = insitu("alice", "history")
    assert history.returncode == 0 and "bob@security" in history.stdout
    diff = insitu("alice", "diff", "1", "2")
    assert "- p, analyst, *, job, submit" in diff.stdout

    exported = tmp_path / "policy.yaml"
    assert insitu("alice", "export", "--version", "1", "-o", str(exported)).returncode == 0
    imported = insitu("alice", "import", str(exported), "--note", "back from git")
    assert imported.returncode == 0, imported.stderr
    assert "+ p, analyst, *, job, submit" in imported.stdout
    rejected = insitu("bob", "reject", imported.stdout.split()[1], "--comment", "use rollback")
    assert rejected.returncode == 0 and "rejected" in rejected.stdout

    rollback = insitu("bob", "rollback", "1")
    assert rollback.returncode == 0 and "(rollback, proposed)" in rollback.stdout
    assert insitu("alice", "approve", rollback.stdout.split()[1]).returncode == 0
    allowed = insitu(
        "alice", "test", "--role", "analyst", "--department", "stats", "--object", "job",
        "--action", "submit",
    )  # fmt: skip
    assert allowed.returncode == 0 and "allow (policy v3)" in allowed.stdout
