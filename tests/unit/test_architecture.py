"""DESIGN.md §4: gateway on top; policies, sandbox and audit never import gateway or each other,
and each third-party library stays in its one place."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SIBLINGS = ("policies", "sandbox", "audit")
# library -> the only modules (path prefixes) that may import it
CONFINED = {
    "casbin": ("policies/",),
    "duckdb": ("sandbox/engines/duckdb.py",),
    "opendp": ("sandbox/dp",),
    "pyspark": ("sandbox/spark",),
    "fastapi": ("gateway/",),
    "sqlglot": ("sandbox/compile",),
}


def imported_modules(path: Path) -> set[str]:
    """Every module named by an absolute import (``from a.b import c`` names ``a.b``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", SIBLINGS)
def test_domain_package_imports_neither_gateway_nor_siblings(package: str) -> None:
    forbidden = {"gateway", *SIBLINGS} - {package}
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path) & forbidden)
        for path in sources(package)
        if imported_roots(path) & forbidden
    }
    assert offenders == {}


def test_domain_packages_exist_with_code() -> None:
    for package in ("gateway", *SIBLINGS):
        assert sources(package), f"{package}/ has no modules"


@pytest.mark.parametrize("library", sorted(CONFINED))
def test_third_party_library_stays_in_its_place(library: str) -> None:
    allowed = CONFINED[library]
    offenders = [
        rel
        for package in ("gateway", *SIBLINGS)
        for path in sources(package)
        if library in imported_roots(path)
        and not (rel := str(path.relative_to(ROOT))).startswith(allowed)
    ]
    assert offenders == []


def test_audit_imports_only_stdlib_cryptography_and_its_store() -> None:
    import sys

    allowed = set(sys.stdlib_module_names) | {"cryptography", "audit", "__future__"}
    for path in sources("audit"):
        extra = imported_roots(path) - allowed
        if path.name.startswith("store"):  # store.py, store_tables.py, store_review.py
            extra -= {"sqlalchemy"}
        assert not extra, f"{path.name} imports {sorted(extra)}"


PACKAGES = ("gateway", *SIBLINGS)


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_each_other_only_through_their_roots(package: str) -> None:
    """`from sandbox import X`, never `from sandbox.engines.duckdb import X` from outside
    sandbox: a package's root names what it offers; its folders are its own business."""
    others = set(PACKAGES) - {package}
    offenders = {
        str(path.relative_to(ROOT)): sorted(deep)
        for path in sources(package)
        if not str(path.relative_to(ROOT)).startswith("gateway/migrations/")
        if (deep := {m for m in imported_modules(path) if m.split(".")[0] in others and "." in m})
    }
    assert offenders == {}


def test_root_only_rule_catches_a_deep_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from sandbox.engines.duckdb import DuckDBEngine\nimport audit.store\n")
    assert imported_modules(module) == {"sandbox.engines.duckdb", "audit.store"}


@pytest.mark.parametrize("package", SIBLINGS)
def test_every_name_a_root_exports_resolves(package: str) -> None:
    import importlib

    root = importlib.import_module(package)
    missing = [name for name in root.__all__ if getattr(root, name, None) is None]
    assert missing == []
