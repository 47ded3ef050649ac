"""The package's shape: pinned exports, allowed imports, a verifier free of SQLAlchemy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import audit

PACKAGE = Path(audit.__file__).parent
OFFLINE = [
    "audit.verify",
    "audit.bundle",
    "audit.merkle",
    "audit.checkpoint",
    "audit.events",
    "audit.receipt",
    "audit.witness",
    "audit.cosignature",
    "audit.witness_http",
]


def test_public_exports_are_pinned() -> None:
    assert sorted(audit.__all__) == [
        "APPEND_FUNCTION",
        "Actor",
        "AddCheckpoint",
        "AppendResult",
        "AuditError",
        "BundleEntry",
        "BundleReader",
        "Checkpoint",
        "CheckpointError",
        "Committed",
        "CompactRange",
        "CosignatureVerifier",
        "EMPTY_ROOT",
        "EntryNotFoundError",
        "Event",
        "EventError",
        "GroupCommitter",
        "JSONValue",
        "NodeId",
        "NoteVerifier",
        "ProofError",
        "SignedHead",
        "Signer",
        "SqlAuditLog",
        "StoreError",
        "VerificationError",
        "VerifiedReceipt",
        "VerifyReport",
        "Witness",
        "WitnessRefusal",
        "WitnessServer",
        "consistency_proof",
        "cosign",
        "cosigned_message",
        "cosigner_verifier",
        "decode",
        "encode",
        "entries_table",
        "fingerprint",
        "format_add_checkpoint",
        "inclusion_proof",
        "leaf_hash",
        "metadata",
        "node_hash",
        "open_checkpoint",
        "open_note",
        "parse_add_checkpoint",
        "parse_cosignatures",
        "perfect_nodes",
        "root_from_leaf_hashes",
        "root_from_nodes",
        "sign_checkpoint",
        "sign_note",
        "term",
        "terms_of",
        "verify_bundle",
        "verify_consistency",
        "verify_inclusion",
        "verify_receipt",
        "witness_key",
        "write_bundle",
    ]
    for name in audit.__all__:
        assert getattr(audit, name) is not None


def test_every_error_derives_from_audit_error() -> None:
    errors = [getattr(audit, n) for n in audit.__all__ if n.endswith("Error")]
    assert all(issubclass(e, audit.AuditError) for e in errors)
    assert issubclass(audit.EntryNotFoundError, audit.StoreError)


def test_offline_verifier_never_imports_sqlalchemy() -> None:
    imports = "; ".join(f"import {m}" for m in OFFLINE)
    code = f"import sys, audit; {imports}; assert 'sqlalchemy' not in sys.modules, 'leak'"
    subprocess.run([sys.executable, "-c", code], check=True)
    subprocess.run(
        [sys.executable, "-c", "import audit.verify, sys; assert 'sqlalchemy' not in sys.modules"],
        check=True,
    )


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_audit_imports_only_stdlib_cryptography_and_its_store_sqlalchemy() -> None:
    for path in PACKAGE.glob("*.py"):
        third_party = {
            name
            for name in _imports(path)
            if name not in sys.stdlib_module_names and name not in {"audit", "__future__"}
        }
        store = path.name.startswith("store")
        allowed = {"cryptography", "sqlalchemy"} if store else {"cryptography"}
        assert third_party <= allowed, f"{path.name} imports {sorted(third_party - allowed)}"


def test_offline_verifier_loads_only_audit_stdlib_and_cryptography() -> None:
    code = (
        "import sys; before = {m.split('.')[0] for m in sys.modules}; "
        "import audit.verify, audit.receipt, audit.witness; "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split()) - set(sys.stdlib_module_names)
    # cryptography's native parts (_cffi_backend, _openssl) come with it; multiprocessing
    # registers the main module again as __mp_main__
    assert loaded <= {"audit", "cryptography", "_cffi_backend", "_openssl", "__mp_main__"}, loaded
