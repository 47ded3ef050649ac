"""`insitu budget show` and a dp job from the command line, against a served gateway."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.demo import documents
from tests.e2e.test_cli import insitu, served  # noqa: F401  (fixture)
from tests.integration.test_dp_jobs import DP_TEMPLATE, PRIVACY


@pytest.mark.slow
def test_budget_show_and_a_dp_job_until_the_budget_is_exhausted(
    served: tuple[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    url, home_dir = served

    def token(subject: str, dept: str, role: str) -> str:
        out = insitu(
            "token", "issue", "--home", str(home_dir), "--subject", subject,
            "--department", dept, "--role", role,
        )  # fmt: skip
        return out.stdout.strip()

    def as_(tok: str, *args: str) -> tuple[int, str, str]:
        done = insitu(*args, env={"INSITU_URL": url, "INSITU_TOKEN": tok})
        return done.returncode, done.stdout, done.stderr

    (tmp_path / "residents.yaml").write_text(documents.RESIDENTS + PRIVACY)
    (tmp_path / "dp.yaml").write_text(DP_TEMPLATE)
    owner, analyst = token("o@civil", "civil", "data_owner"), token("a@stats", "stats", "analyst")
    assert as_(owner, "dataset", "register", str(tmp_path / "residents.yaml"))[0] == 0
    assert as_(analyst, "template", "propose", str(tmp_path / "dp.yaml"))[0] == 0
    assert as_(owner, "template", "approve", "residents-dp", "1")[0] == 0
    code, out, err = as_(analyst, "budget", "show")
    assert code == 0, err
    assert "civil.residents" in out and "0.3" in out
    for _ in range(3):
        code, out, err = as_(
            analyst, "job", "submit", "residents-dp", "-p", "born_since=1950", "--wait"
        )
        assert code == 0, err
        assert "residents" in out
    code, out, err = as_(analyst, "job", "submit", "residents-dp", "-p", "born_since=1950")
    assert code == 1
    assert "429" in err and "remaining rho 0" in err and len(err.strip().splitlines()) == 1
    code, out, err = as_(analyst, "budget", "show", "--json")
    mine = [b for b in json.loads(out)["budgets"] if b["department"] == "stats"]
    assert mine[0]["rho"]["remaining"] == "0"
