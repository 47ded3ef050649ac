"""The CLI starts light: `insitu --help` and remote commands load no engine, database or server.

Each check runs a fresh interpreter (the test process has imported everything already) and
looks at `sys.modules`; no timing is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.auth.keys import DEFAULT_OVERLAP_S
from gateway.cli import local

HEAVY = (
    "duckdb",
    "sqlglot",
    "sqlalchemy",
    "alembic",
    "fastapi",
    "starlette",
    "uvicorn",
    "pandas",
    "polars",
    "pyarrow",
    "opendp",
    "casbin",
    "authlib",
    "joserfc",
)


def loaded_after(code: str, tmp_path: Path) -> set[str]:
    probe = f"import sys\n{code}\nimport json\nprint(json.dumps(sorted(sys.modules)))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSITU_")}
    env["INSITU_CONFIG_DIR"] = str(tmp_path)  # an empty token cache
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=env,
    )
    return {name.split(".")[0] for name in json.loads(out.stdout.splitlines()[-1])}


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("import gateway.cli", id="import-cli"),
        pytest.param(
            "from gateway.cli.client import Client\nClient('http://127.0.0.1:9', token='t')",
            id="remote-client",
        ),
        pytest.param(
            "from gateway.cli.client import Client\nClient('http://127.0.0.1:9')",
            id="remote-client-token-cache",
        ),
    ],
)
def test_the_cli_and_its_client_import_nothing_heavy(code: str, tmp_path: Path) -> None:
    assert loaded_after(code, tmp_path) & set(HEAVY) == set()


def test_gateway_errors_imports_neither_duckdb_nor_sqlglot(tmp_path: Path) -> None:
    assert loaded_after("import gateway.errors", tmp_path) & {"duckdb", "sqlglot"} == set()


def test_the_cli_overlap_default_is_the_key_modules() -> None:
    assert local.DEFAULT_OVERLAP_S == DEFAULT_OVERLAP_S
