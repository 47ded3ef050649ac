"""Independent implementations for the interop tests: found, or skipped with the reason
(a failure under CI=true, where .ci/run installs them)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

GOPATH_SYSTEM = Path("/usr/share/gocode")
XMOD = GOPATH_SYSTEM / "src/golang.org/x/mod/sumdb/note"
REGENERATE = os.environ.get("INSITU_REGENERATE_FIXTURES") == "1"


def missing(reason: str) -> None:
    """Skip outside CI; fail under CI=true, where the tool must be there."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must install it: see .ci/run)")
    pytest.skip(reason)


def go_program(source: Path, out: Path) -> Path:
    """Build a Go program offline in GOPATH mode against Debian's golang-golang-x-mod-dev."""
    go = shutil.which("go")
    if go is None:
        missing("Go is not installed (apt-get install golang-go golang-golang-x-mod-dev)")
    if not XMOD.is_dir():
        missing("golang.org/x/mod is not installed (apt-get install golang-golang-x-mod-dev)")
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": str(GOPATH_SYSTEM),
        "GOCACHE": str(out.parent / "gocache"),
        "GOFLAGS": "",
        "GOPROXY": "off",
    }
    subprocess.run(
        [str(go), "build", "-o", str(out), "."], cwd=source, env=env, check=True, timeout=300
    )
    return out


def run_json(command: list[str], document: Any, cwd: Path | None = None) -> Any:
    done = subprocess.run(
        command,
        input=json.dumps(document).encode(),
        capture_output=True,
        check=True,
        cwd=cwd,
        timeout=300,
    )
    return json.loads(done.stdout)


def load_fixture(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def save_fixture(path: Path, document: Any) -> None:
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
