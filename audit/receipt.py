"""Receipts: a requester's own proof that an entry is in the log, checkable without the server.

A receipt (as the gateway hands it out with every release) is a JSON object:

    {"audit_index": 41, "tree_size": 57, "leaf_hash": "<hex>", "entry": "<base64 event bytes>",
     "inclusion_proof": ["<hex>", ...], "checkpoint": "<signed note>"}

`verify_receipt` checks that the checkpoint is signed by a trusted log key, that its size is
`tree_size`, that `entry` hashes to `leaf_hash` and decodes as a canonical event, and that the
inclusion proof leads from that leaf at `audit_index` to the signed root. Anything malformed
raises `VerificationError`, never another exception.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from audit.checkpoint import Checkpoint, NoteVerifier, open_checkpoint
from audit.errors import AuditError, VerificationError
from audit.events import Event, decode
from audit.merkle import leaf_hash, verify_inclusion

__all__ = ["VerifiedReceipt", "verify_receipt"]

_HEX_HASH = re.compile(r"[0-9a-f]{64}")
_FIELDS = {"audit_index", "tree_size", "leaf_hash", "inclusion_proof", "checkpoint", "entry"}


@dataclass(frozen=True, slots=True)
class VerifiedReceipt:
    """What a verified receipt established: this event is entry `index` of the signed tree."""

    index: int
    checkpoint: Checkpoint
    event: Event


def _hash(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not _HEX_HASH.fullmatch(value):
        raise VerificationError(f"receipt {what} is not a hex SHA-256 hash")
    return bytes.fromhex(value)


def _int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise VerificationError(f"receipt {what} is not a non-negative integer")
    return value


def verify_receipt(
    receipt: Mapping[str, Any],
    verifiers: Sequence[NoteVerifier],
    origin: str | None = None,
) -> VerifiedReceipt:
    """Verify `receipt` against trusted log keys (and `origin`, default: the note's own)."""
    if not isinstance(receipt, Mapping) or not set(receipt) >= _FIELDS:
        raise VerificationError(f"a receipt is an object with the fields {sorted(_FIELDS)}")
    index = _int(receipt["audit_index"], "audit_index")
    size = _int(receipt["tree_size"], "tree_size")
    leaf = _hash(receipt["leaf_hash"], "leaf_hash")
    proof_hex = receipt["inclusion_proof"]
    if not isinstance(proof_hex, list) or len(proof_hex) > 64:
        raise VerificationError("receipt inclusion_proof is not a list of at most 64 hashes")
    proof = [_hash(p, "inclusion_proof[]") for p in proof_hex]
    note, entry = receipt["checkpoint"], receipt["entry"]
    if not isinstance(note, str) or not isinstance(entry, str):
        raise VerificationError("receipt checkpoint and entry are strings")
    try:
        body = base64.b64decode(entry.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise VerificationError("receipt entry is not base64") from None
    try:
        checkpoint = open_checkpoint(note, verifiers, origin or note.split("\n", 1)[0])
        if checkpoint.size != size:
            raise VerificationError("the receipt's tree_size is not its checkpoint's size")
        if leaf_hash(body) != leaf:
            raise VerificationError("the receipt's entry does not hash to its leaf_hash")
        event = decode(body)
        verify_inclusion(leaf, index, size, proof, checkpoint.root)
    except VerificationError:
        raise
    except AuditError as exc:
        raise VerificationError(f"receipt does not verify: {exc}") from None
    return VerifiedReceipt(index, checkpoint, event)
