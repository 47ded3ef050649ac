"""insitu's decisions (PyCasbin behind `PolicyEngine`) against node-casbin, an independent
implementation, on the project's model for thousands of random requests and rules.

The fast tests check node-casbin's kept answer (fixtures/node_casbin.json) without node; the slow
one runs node now (`npm ci` in tests/interop; it skips without node or the package outside CI,
where `.ci/run` installs them). Regenerate with INSITU_REGENERATE_FIXTURES=1.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.interop._tools import REGENERATE, load_fixture, missing, run_json, save_fixture
from tests.interop.casbin_case import FIXTURE, build_case, pycasbin_decisions

HERE = Path(__file__).parent
FAST_SAMPLE = 1_000


@pytest.fixture(scope="module")
def case() -> dict[str, Any]:
    return build_case()


def test_the_case_node_decided_is_still_the_one_insitu_builds(case: dict[str, Any]) -> None:
    if REGENERATE:
        pytest.skip("regenerating the fixture")
    assert case == load_fixture(FIXTURE)["input"]


def test_pycasbin_agrees_with_node_casbin_on_a_sample(case: dict[str, Any]) -> None:
    node = load_fixture(FIXTURE)["node"]["decisions"]
    ours = pycasbin_decisions(case, FAST_SAMPLE)
    assert ours == node[:FAST_SAMPLE]
    assert 0.05 < sum(ours) / len(ours) < 0.95  # both answers are well represented


@pytest.mark.slow
def test_pycasbin_agrees_with_node_casbin_on_every_request(case: dict[str, Any]) -> None:
    node = load_fixture(FIXTURE)["node"]["decisions"]
    assert pycasbin_decisions(case) == node


@pytest.mark.slow
def test_node_casbin_decides_now_as_kept(case: dict[str, Any]) -> None:
    node = shutil.which("node")
    if node is None:
        missing("node is not installed")
    if not (HERE / "node_modules" / "casbin").is_dir():
        missing("the casbin npm package is not installed (npm ci in tests/interop)")
    answer = run_json([node, str(HERE / "casbin" / "decide.js")], case, cwd=HERE)
    if REGENERATE:
        save_fixture(FIXTURE, {"input": case, "node": answer})
    assert {"input": case, "node": answer} == load_fixture(FIXTURE)
