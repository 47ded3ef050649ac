"""insitu's tamper-evident audit log: canonical events, RFC 6962 Merkle tree, signed checkpoints,
SQL storage and an offline verifier (`python -m audit.verify`). See README.md.

The store names (`SqlAuditLog`, `AppendResult`, `metadata`) and the verifier names
(`verify_bundle`, `VerifyReport`) load lazily, so `import audit` and the offline verifier never
import SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from audit.bundle import BundleEntry, BundleReader, write_bundle
from audit.checkpoint import (
    Checkpoint,
    NoteVerifier,
    Signer,
    open_checkpoint,
    open_note,
    sign_checkpoint,
    sign_note,
)
from audit.committer import Committed, GroupCommitter
from audit.cosignature import (
    CosignatureVerifier,
    cosign,
    cosigned_message,
    cosigner_verifier,
    witness_key,
)
from audit.errors import (
    AuditError,
    CheckpointError,
    EntryNotFoundError,
    EventError,
    ProofError,
    StoreError,
    VerificationError,
)
from audit.events import Actor, Event, JSONValue, decode, encode, fingerprint
from audit.merkle import (
    EMPTY_ROOT,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from audit.receipt import VerifiedReceipt, verify_receipt
from audit.terms import term, terms_of
from audit.tree import (
    CompactRange,
    NodeId,
    consistency_proof,
    inclusion_proof,
    perfect_nodes,
    root_from_nodes,
)
from audit.witness import Witness, WitnessRefusal
from audit.witness_http import (
    AddCheckpoint,
    WitnessServer,
    format_add_checkpoint,
    parse_add_checkpoint,
    parse_cosignatures,
)

if TYPE_CHECKING:
    from audit.store import AppendResult, SignedHead, SqlAuditLog, metadata
    from audit.store_tables import APPEND_FUNCTION, entries_table
    from audit.verify import VerifyReport, verify_bundle

_LAZY = {
    "AppendResult": "audit.store",
    "SignedHead": "audit.store",
    "SqlAuditLog": "audit.store",
    "metadata": "audit.store",
    "entries_table": "audit.store_tables",
    "APPEND_FUNCTION": "audit.store_tables",
    "VerifyReport": "audit.verify",
    "verify_bundle": "audit.verify",
}

__all__ = [
    "APPEND_FUNCTION",
    "EMPTY_ROOT",
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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'audit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
