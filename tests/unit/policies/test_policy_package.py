"""The package surface: pinned exports, casbin confined to one module, the model file as shipped."""

from __future__ import annotations

import ast
from pathlib import Path

import policies
from policies.enforcer import model_text

PACKAGE = Path(policies.__file__).parent


def test_public_exports_are_pinned() -> None:
    assert sorted(policies.__all__) == [
        "ACTIONS",
        "CLASSIFICATIONS",
        "Decision",
        "InvalidRequest",
        "InvalidRule",
        "MAX_DOCUMENT_BYTES",
        "OBJECTS",
        "PURPOSE_STATES",
        "PolicyBug",
        "PolicyDenied",
        "PolicyEngine",
        "PolicyError",
        "ReasonCode",
        "Request",
        "Rule",
        "SHARE_CLASSES",
        "data_object",
        "data_parts",
        "default_rules",
        "diff_rules",
        "format_rules",
        "parse_rule_line",
        "parse_rules",
        "policy_from_yaml",
        "policy_to_yaml",
    ]
    for name in policies.__all__:
        assert hasattr(policies, name), name


def test_every_error_is_a_policy_error() -> None:
    for name in ("InvalidRule", "InvalidRequest", "PolicyDenied", "PolicyBug"):
        assert issubclass(getattr(policies, name), policies.PolicyError)


def imports(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_casbin_is_imported_only_by_the_enforcer_module() -> None:
    users = sorted(p.name for p in PACKAGE.glob("*.py") if "casbin" in imports(p))
    assert users == ["enforcer.py"]


def test_policies_imports_no_other_insitu_package() -> None:
    for path in PACKAGE.glob("*.py"):
        assert not imports(path) & {"gateway", "sandbox", "audit"}, path.name


def test_model_uses_key_match_and_no_regex_or_eval() -> None:
    matcher = next(line for line in model_text().splitlines() if line.startswith("m = "))
    assert "keyMatch(r.obj, p.obj)" in matcher
    assert "regex" not in matcher.lower()
    assert "eval(" not in matcher


def test_data_object_builds_the_vocabulary_path() -> None:
    obj = policies.data_object("conditional", "general", "market.registry")
    assert obj == "data/conditional/general/market.registry"
    policies.Request(roles=("analyst",), department="tax", obj=obj, action="query:dp")
