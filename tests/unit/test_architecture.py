"""DESIGN.md §4: gateway on top; policies, sandbox and audit never import gateway or each other,
and each third-party library stays in its one place."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SIBLINGS = ("policies", "sandbox", "audit")
# library -> the only modules (path prefixes) that may import it
CONFINED = {
    "casbin": ("policies/",),
    "duckdb": ("sandbox/engines/duckdb.py",),
    "opendp": ("sandbox/dp",),
    "pyspark": ("sandbox/engines/spark.py",),
    "fastapi": ("gateway/",),
    "sqlglot": ("sandbox/compile",),
}


@functools.cache
def _nodes(path: Path) -> tuple[ast.AST, ...]:
    """Every node of a source file, parsed once per run (each rule walks every file)."""
    return tuple(ast.walk(ast.parse(path.read_text(), filename=str(path))))


@functools.cache
def imported_modules(path: Path) -> frozenset[str]:
    """Every module named by an absolute import (``from a.b import c`` names ``a.b``)."""
    names = set()
    for node in _nodes(path):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return frozenset(names)


@functools.cache
def imported_roots(path: Path) -> frozenset[str]:
    roots = set()
    for node in _nodes(path):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return frozenset(roots)


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


# --- The store: SQLAlchemy and the tables stay with the modules that own them -------------------

# table -> the one module that owns it (writes it, and offers every other module functions)
TABLE_OWNERS = {
    "policy_versions": "gateway/store/policy_versions.py",
    "policy_proposals": "gateway/policy/admin.py",
    "datasets": "gateway/catalogue/registry.py",
    "templates": "gateway/catalogue/templates.py",
    "template_approvals": "gateway/catalogue/templates.py",
    "template_retirements": "gateway/catalogue/templates.py",
    "purposes": "gateway/catalogue/purposes.py",
    "jobs": "gateway/jobs/model.py",
    "job_results": "gateway/jobs/model.py",
    "department_turns": "gateway/jobs/model.py",
    "idempotency_keys": "gateway/jobs/idempotency.py",
    "verify_usage": "gateway/jobs/verify_keys.py",
    "verify_alerts": "gateway/jobs/verify_keys.py",
    "verify_requests": "gateway/jobs/verify_keys.py",
    "release_cells": "gateway/jobs/releases/history.py",
    "release_partitions": "gateway/jobs/releases/partition.py",
    "release_partition_heads": "gateway/jobs/releases/partition.py",
    "release_refinements": "gateway/jobs/releases/partition.py",
    "verify_probes": "gateway/jobs/verify_keys.py",
    "privacy_budgets": "gateway/dp/ledger.py",
    "budget_reservations": "gateway/dp/ledger.py",
    "dp_unit_stats": "gateway/dp/stats.py",
    "console_links": "gateway/console/sessions.py",
    "console_sessions": "gateway/console/sessions.py",
    "dataset_profiles": "gateway/quality/store.py",
    "open_datasets": "gateway/opendata/model.py",
    "open_versions": "gateway/opendata/model.py",
    "api_keys": "gateway/opendata/apikeys.py",
    "findings": "gateway/findings/inbox.py",
    "catalogue_version": "gateway/catalogue/cache.py",
}
# (module, table): a read of another module's table inside the reader's own query
FOREIGN_READS = {
    ("gateway/policy/reads.py", "policy_proposals"),  # the policy's read side
    ("gateway/policy/reads.py", "policy_versions"),
    ("gateway/catalogue/purposes.py", "datasets"),  # a purpose names a dataset of its owner
    ("gateway/jobs/idempotency.py", "jobs"),  # a replay answers with the job's status
}
# Besides the owners: the store itself, the audit trail's writer and review, migrations.
SQL_PLACES = ("gateway/store/", "gateway/trail/", "gateway/migrations/")


@functools.cache
def table_references(path: Path) -> tuple[set[str], set[str]]:
    """(tables named as `schema.T`, tables written through `.insert/.update/.delete`), with
    local aliases (`u = schema.verify_usage`) followed."""
    tree = ast.parse(path.read_text(), filename=str(path))

    def table_of(node: ast.AST) -> str | None:
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "schema"
        ):
            return node.attr
        return None

    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            pairs: list[tuple[ast.AST, ast.AST]] = []
            for target in node.targets:
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs.extend(zip(target.elts, node.value.elts, strict=False))
                else:
                    pairs.append((target, node.value))
            for target, value in pairs:
                # `a = schema.template_approvals.c` names the table too
                bound = (
                    value.value if isinstance(value, ast.Attribute) and value.attr == "c" else value
                )
                if isinstance(target, ast.Name) and (table := table_of(bound)):
                    aliases[target.id] = table
    named = {t for node in ast.walk(tree) if (t := table_of(node))}
    written = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"insert", "update", "delete"}
        ):
            base = node.func.value
            table = table_of(base) or (aliases.get(base.id) if isinstance(base, ast.Name) else None)
            if table:
                written.add(table)
    return named, written


def test_every_table_has_one_owner() -> None:
    from gateway.store import schema

    assert set(TABLE_OWNERS) == set(schema.metadata.tables)


def test_sqlalchemy_only_in_the_store_the_trail_and_table_owners() -> None:
    allowed = (*SQL_PLACES, *set(TABLE_OWNERS.values()), *{m for m, _ in FOREIGN_READS})
    offenders = [
        rel
        for path in sources("gateway")
        if "sqlalchemy" in imported_roots(path)
        and not (rel := str(path.relative_to(ROOT))).startswith(allowed)
    ]
    assert offenders == []


def test_tables_are_written_by_their_owner_and_read_by_it_or_a_declared_reader() -> None:
    named_offenders, write_offenders = {}, {}
    for path in sources("gateway"):
        rel = str(path.relative_to(ROOT))
        if rel.startswith(SQL_PLACES):
            continue
        named, written = table_references(path)
        stray = {t for t in named if TABLE_OWNERS.get(t) != rel and (rel, t) not in FOREIGN_READS}
        if stray:
            named_offenders[rel] = sorted(stray)
        if bad := {t for t in written if TABLE_OWNERS.get(t) != rel}:
            write_offenders[rel] = sorted(bad)
    assert named_offenders == {}
    assert write_offenders == {}


def test_the_table_rule_catches_an_aliased_write(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "def f(conn):\n"
        "    u, d = schema.verify_usage, schema.datasets.c\n"
        "    conn.execute(u.update().values(blocked=True))\n"
        "    conn.execute(schema.jobs.delete())\n"
    )
    named, written = table_references(module)
    assert named == {"verify_usage", "datasets", "jobs"}
    assert written == {"verify_usage", "jobs"}


@pytest.mark.parametrize("package", PACKAGES)
def test_every_folder_says_what_it_owns_and_may_import(package: str) -> None:
    folders = sorted(
        {
            path.parent
            for path in sources(package)
            if path.name == "__init__.py" and "migrations" not in path.parts
        }
    )
    missing = [
        str(folder.relative_to(ROOT))
        for folder in folders
        if folder != ROOT / package
        and not (
            (readme := folder / "README.md").exists()
            and "## Owns" in (text := readme.read_text())
            and "## May import" in text
        )
    ]
    assert missing == []


def test_the_client_package_imports_no_package_of_the_gateway() -> None:
    """`insitu.client` is an HTTP client like any other: it may not reach into the gateway."""
    forbidden = {"gateway", *SIBLINGS}
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path) & forbidden)
        for path in sources("insitu")
        if imported_roots(path) & forbidden
    }
    assert sources("insitu"), "insitu/ has no modules"
    assert offenders == {}


def test_the_gateway_packages_do_not_import_the_client() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in sources(package)
        if "insitu" in imported_roots(path)
    ]
    assert offenders == []
