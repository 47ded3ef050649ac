"""The audit package's exceptions: one base, a few precise kinds.

```
AuditError                   anything the audit package refuses
├── EventError               an event, a JSON value or an encoded body is invalid
├── ProofError               a Merkle proof does not verify, or cannot exist for the sizes asked
├── CheckpointError          a signed note, key or vkey is malformed or does not verify
├── VerificationError        a log or bundle failed verification (`.index`: first bad entry)
└── StoreError               the SQL store cannot serve the request
    └── EntryNotFoundError   no entry at that index (yet)
```

Domain errors carry no HTTP codes; the gateway maps them. Messages never contain event values.
"""

from __future__ import annotations

__all__ = [
    "AuditError",
    "CheckpointError",
    "EntryNotFoundError",
    "EventError",
    "ProofError",
    "StoreError",
    "VerificationError",
]


class AuditError(Exception):
    """Base class of every error raised on purpose by the audit package."""


class EventError(AuditError):
    """An event, a JSON value or an encoded event body is invalid."""


class ProofError(AuditError):
    """A Merkle inclusion or consistency proof is invalid (or was asked for impossible sizes)."""


class CheckpointError(AuditError):
    """A checkpoint note, signing key or verifier key is malformed or does not verify."""


class VerificationError(AuditError):
    """A log or bundle failed verification.

    `index` is the 0-based index of the first bad entry when the failure can be pinned to one
    entry, otherwise None (for example a bad signature or an equivocating checkpoint).
    """

    def __init__(self, message: str, *, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class StoreError(AuditError):
    """The SQL store cannot serve the request (conflict, unsupported database, corrupt row)."""


class EntryNotFoundError(StoreError):
    """No entry exists at the requested index."""
