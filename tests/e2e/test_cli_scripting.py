"""The CLI as scripts and people use it (issue 17): `--output json|csv` on every list and show
command, full ids at 80 columns, dp intervals, sorted results, saved results whose receipt the
analyst checks, `job list`, `dataset init|update`, shell completion — a subprocess each time,
against a served gateway."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.e2e.demo_gateway import Demo, served_demo

pytestmark = pytest.mark.slow

NO_FILING = "enterprises-without-tax-filing"
DP = "residents-by-district-dp"
ROLES = {
    "analyst": ("analyst@stats", "stats", "analyst"),
    "civil": ("owner@civil", "civil", "data_owner"),
    "market": ("owner@market", "market", "data_owner"),
    "auditor": ("auditor@audit", "audit", "auditor"),
    "officer": ("officer@security", "security", "security_officer"),
}


def insitu(
    demo: Demo | None, role: str | None, *args: str, columns: int = 200
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSITU_")}
    # typer detects the shell from the parent process; here the shell is named instead
    env.update(COLUMNS=str(columns), _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1")
    if demo is not None and role is not None:
        env.update(INSITU_URL=demo.url, INSITU_TOKEN=demo.token(*ROLES[role]))
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip


def ok(demo: Demo, role: str, *args: str, columns: int = 200) -> str:
    done = insitu(demo, role, *args, columns=columns)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with served_demo(tmp_path_factory.mktemp("cli")) as running:
        yield running


@pytest.fixture(scope="module")
def job_id(demo: Demo) -> str:
    purposes = [arg for p in demo.purposes for arg in ("--purpose", p)]
    out = ok(demo, "analyst", "job", "submit", NO_FILING, "-p", "year=2024",
             "-p", "industry=retail", *purposes)  # fmt: skip
    return out.strip()


LISTS = [
    ("analyst", ("dataset", "list")),
    ("analyst", ("template", "list")),
    ("analyst", ("purpose", "list")),
    ("analyst", ("job", "list")),
    ("analyst", ("budget", "show")),
    ("civil", ("verify", "alerts")),
    ("auditor", ("audit", "tail", "-n", "5")),
    ("auditor", ("audit", "stats")),
    ("officer", ("policy", "list")),
    ("officer", ("policy", "proposals")),
    ("officer", ("policy", "history")),
]


@pytest.mark.parametrize(("role", "command"), LISTS, ids=[" ".join(c) for _, c in LISTS])
def test_every_list_command_prints_json_and_csv(
    demo: Demo, job_id: str, role: str, command: tuple[str, ...]
) -> None:
    as_json = json.loads(ok(demo, role, *command, "--output", "json"))
    assert isinstance(as_json, list | dict)
    rows = list(csv.reader(io.StringIO(ok(demo, role, "--output", "csv", *command))))
    assert rows and all(len(r) == len(rows[0]) for r in rows)


def test_show_commands_take_output_too(demo: Demo, job_id: str) -> None:
    for command in (
        ("job", "show", job_id),
        ("dataset", "show", "civil.residents"),
        ("template", "show", DP, "1"),
    ):
        assert json.loads(ok(demo, "analyst", *command, "--output", "json"))
        fields = list(csv.reader(io.StringIO(ok(demo, "analyst", *command, "--output", "csv"))))
        assert fields[0] == ["field", "value"] and ["id", command[2]] in fields
        assert command[2] in ok(demo, "analyst", *command, "--output", "table")


def test_ids_are_whole_at_80_columns(demo: Demo, job_id: str) -> None:
    jobs = ok(demo, "analyst", "job", "list", columns=80)
    assert job_id in jobs.split()
    purposes = ok(demo, "analyst", "purpose", "list", columns=80)
    assert all(p in purposes.split() for p in demo.purposes)
    templates = ok(demo, "analyst", "template", "list", columns=80)
    assert NO_FILING in templates.split()


def test_results_are_sorted_right_aligned_and_saved_for_the_receipt(
    demo: Demo, job_id: str, tmp_path: Path
) -> None:
    saved = tmp_path / "result.json"
    out = ok(demo, "analyst", "job", "result", job_id, "--wait", "60", "--save", str(saved))
    body = json.loads(saved.read_text())
    districts = sorted(row[0] for row in body["rows"])
    lines = [line for line in out.splitlines() if any(f" {d} " in line for d in districts)]
    assert [next(d for d in districts if f" {d} " in line) for line in lines] == districts
    assert all(line.rstrip("│ ").endswith(str(n)) for line, n in
               zip(lines, [dict(body["rows"])[d] for d in districts], strict=True))  # fmt: skip
    checked = ok(demo, "analyst", "audit", "receipt", str(saved))  # no --vkey: the gateway's
    assert "the result matches the logged result hash" in checked
    as_csv = tmp_path / "result.csv"
    ok(demo, "analyst", "job", "result", job_id, "--save", str(as_csv))
    assert as_csv.read_text().splitlines()[0] == "district,enterprises"


def test_a_dp_job_prints_intervals_and_its_estimate_first(demo: Demo) -> None:
    preview = ok(demo, "analyst", "job", "estimate", DP, "-p", "born_since=1960")
    assert "charge ρ 0.1" in preview and "fits the budget" in preview
    out = ok(demo, "analyst", "job", "submit", DP, "-p", "born_since=1960", "--wait")
    rows = [line for line in out.splitlines() if line.count("│") >= 3 and "±" in line]
    assert len(rows) == 16  # every declared district, each count with its interval
    listed = ok(demo, "analyst", "job", "list", "--template", DP, "--output", "json")
    job = json.loads(listed)[0]["id"]
    table = list(csv.DictReader(io.StringIO(
        ok(demo, "analyst", "job", "result", job, "--output", "csv"))))  # fmt: skip
    assert {"residents", "residents_lower", "residents_upper"} <= set(table[0])
    assert all(float(r["residents_lower"]) <= float(r["residents"]) <= float(r["residents_upper"])
               for r in table)  # fmt: skip


def test_dataset_init_drafts_a_document_that_registers_and_updates(
    demo: Demo, tmp_path: Path
) -> None:
    data = demo.home / "data" / "market" / "inspections.parquet"
    pq.write_table(pa.table({"inspection_id": ["I1", "I2"], "district": ["a", "b"],
                             "fine": [10.5, 0.0], "year": [2024, 2025]}), data)  # fmt: skip
    doc = tmp_path / "inspections.yaml"
    ok(demo, "market", "dataset", "init", str(data), "--home", str(demo.home), "-o", str(doc))
    text = doc.read_text()
    assert "id: market.inspections" in text and "provider: market" in text
    assert '{name: "inspection_id", type: VARCHAR, sensitivity: identifier}' in text
    assert '{name: "fine", type: DOUBLE, sensitivity: sensitive}' in text
    assert "registered market.inspections" in ok(demo, "market", "dataset", "register", str(doc))
    doc.write_text(text.replace('title: "Inspections"', 'title: "Market inspections"'))
    assert "updated market.inspections" in ok(demo, "market", "dataset", "update", str(doc))
    shown = json.loads(ok(demo, "analyst", "dataset", "show", "market.inspections"))
    assert shown["title"] == "Market inspections"
    refused = insitu(demo, "civil", "dataset", "update", str(doc))
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1
    outside = tmp_path / "x.parquet"
    outside.write_bytes(data.read_bytes())
    bad = insitu(demo, "market", "dataset", "init", str(outside), "--home", str(demo.home))
    assert bad.returncode == 2 and "data/<department>" in bad.stderr


def test_shell_completion_is_offered() -> None:
    out = insitu(None, None, "--show-completion", "bash")
    assert out.returncode == 0 and "complete" in out.stdout
