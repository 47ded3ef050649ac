"""Signed checkpoints: C2SP tlog-checkpoint bodies in C2SP signed notes, Ed25519 signatures.

    <origin>\\n<size>\\n<base64 root>\\n
    \\n
    — <key name> <base64(4-byte key hash || 64-byte Ed25519 signature)>\\n   (one line per signer)

The key hash is SHA-256(key name || "\\n" || 0x01 || public key)[:4]; a verifier key travels as
the vkey string `<name>+<hex key hash>+<base64(0x01 || public key)>`. `open_checkpoint` is
verify-or-raise: it needs `required` distinct known keys with valid signatures, ignores
signatures by unknown keys and fails on a bad signature by a known key. Extension lines (C2SP
tlog-checkpoint: opaque, non-empty lines after the root) are read and kept in the body, so
signatures over them verify; insitu writes none.

Signatures are checked by any `KeyVerifier`: `NoteVerifier` here (type 0x01) or the witness's
`cosignature.CosignatureVerifier` (type 0x04, timestamped).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit.errors import CheckpointError
from audit.merkle import HASH_SIZE

__all__ = [
    "DASH",
    "ED25519",
    "Checkpoint",
    "KeyVerifier",
    "NoteVerifier",
    "Signer",
    "check_name",
    "count_signatures",
    "decode_b64",
    "key_hash",
    "open_checkpoint",
    "open_note",
    "sign_checkpoint",
    "sign_note",
    "split_note",
]

ED25519: Final = 0x01
DASH: Final = "\u2014 "
MAX_SIGNATURES: Final = 100
_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")


def decode_b64(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise CheckpointError(f"{what} is not standard base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise CheckpointError(f"{what} is not canonical base64")
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise CheckpointError("a key name must be a non-empty string")
    if "+" in name or any(c.isspace() for c in name) or _CONTROL.search(name):
        raise CheckpointError("a key name must not contain '+', spaces or control characters")
    return name


def key_hash(name: str, public_key: bytes) -> bytes:
    """The signed-note key hash of an Ed25519 key: SHA-256(name || "\\n" || 0x01 || key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


class KeyVerifier(Protocol):
    """What checks one kind of note signature: a name, a 4-byte key hash, `verify`."""

    @property
    def name(self) -> str: ...

    @property
    def key_hash(self) -> bytes: ...

    @property
    def vkey(self) -> str: ...

    def verify(self, message: bytes, signature: bytes) -> bool: ...


@dataclass(frozen=True, slots=True)
class NoteVerifier:
    """A named Ed25519 public key that can check note signatures."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        check_name(self.name)
        if not isinstance(self.public_key, bytes) or len(self.public_key) != 32:
            raise CheckpointError("an Ed25519 public key is 32 bytes")

    @property
    def key_hash(self) -> bytes:
        return key_hash(self.name, self.public_key)

    @property
    def vkey(self) -> str:
        return f"{self.name}+{self.key_hash.hex()}+{_b64(bytes([ED25519]) + self.public_key)}"

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse `<name>+<hex key hash>+<base64(0x01 || key)>`."""
        parts = vkey.split("+", 2) if isinstance(vkey, str) else []
        if len(parts) != 3 or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
            raise CheckpointError("a vkey reads <name>+<8 hex digits>+<base64 key>")
        raw = decode_b64(parts[2], "vkey key")
        if len(raw) != 33 or raw[0] != ED25519:
            raise CheckpointError("vkey is not an Ed25519 key")
        verifier = cls(parts[0], raw[1:])
        if verifier.key_hash.hex() != parts[1]:
            raise CheckpointError("vkey key hash does not match its name and key")
        return verifier

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True, slots=True)
class Signer:
    """A named Ed25519 private key that signs checkpoints."""

    name: str
    private_key: Ed25519PrivateKey = field(repr=False)

    def __post_init__(self) -> None:
        check_name(self.name)
        if not isinstance(self.private_key, Ed25519PrivateKey):
            raise CheckpointError("a checkpoint signer needs an Ed25519 private key")

    @classmethod
    def generate(cls, name: str) -> Signer:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes, name: str, password: bytes | None = None) -> Signer:
        """Load a PKCS#8 PEM private key (optionally encrypted with `password`)."""
        try:
            key = serialization.load_pem_private_key(pem, password=password)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise CheckpointError("not a readable PEM private key (or wrong password)") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise CheckpointError("the PEM key is not an Ed25519 key")
        return cls(name, key)

    def to_pem(self, password: bytes | None = None) -> bytes:
        """PKCS#8 PEM; encrypted when `password` is given."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    def verifier(self) -> NoteVerifier:
        raw = self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return NoteVerifier(self.name, raw)

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The signed statement "the log `origin` has `size` entries with Merkle root `root`"."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.extensions, tuple) or not all(
            isinstance(line, str) and line and "\n" not in line and not _CONTROL.search(line)
            for line in self.extensions
        ):
            raise CheckpointError("checkpoint extension lines are non-empty single lines")
        if not isinstance(self.origin, str) or not self.origin.strip():
            raise CheckpointError("a checkpoint origin must be a non-empty string")
        if "\n" in self.origin or _CONTROL.search(self.origin):
            raise CheckpointError("a checkpoint origin must not contain control characters")
        if not isinstance(self.size, int) or isinstance(self.size, bool):
            raise CheckpointError("a checkpoint size must be an integer")
        if not 0 <= self.size < 2**63:
            raise CheckpointError("a checkpoint size must be between 0 and 2**63 - 1")
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise CheckpointError(f"a checkpoint root must be {HASH_SIZE} bytes")

    def body(self) -> str:
        extensions = "".join(f"{line}\n" for line in self.extensions)
        return f"{self.origin}\n{self.size}\n{_b64(self.root)}\n{extensions}"

    @classmethod
    def from_body(cls, body: str) -> Checkpoint:
        lines = body.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise CheckpointError(
                "a checkpoint body is origin, size and root lines (then extensions)"
            )
        origin, size, root = lines[:3]
        if not _SIZE.fullmatch(size):
            raise CheckpointError("checkpoint size is not a canonical decimal number")
        if any(not line for line in lines[3:-1]):
            raise CheckpointError("checkpoint extension lines must not be empty")
        return cls(origin, int(size), decode_b64(root, "checkpoint root"), tuple(lines[3:-1]))


def sign_note(text: str, signers: Sequence[Signer]) -> str:
    """A signed note: `text` (ending in a newline), a blank line, one signature line per signer."""
    if not signers:
        raise CheckpointError("a note needs at least one signer")
    if not text.endswith("\n") or _CONTROL.search(text):
        raise CheckpointError("note text ends in a newline and has no control characters")
    lines = []
    for signer in signers:
        signature = signer.verifier().key_hash + signer.sign(text.encode("utf-8"))
        lines.append(f"{DASH}{signer.name} {_b64(signature)}\n")
    return text + "\n" + "".join(lines)


def sign_checkpoint(checkpoint: Checkpoint, signers: Sequence[Signer]) -> str:
    """The signed note for `checkpoint`, one signature line per signer."""
    return sign_note(checkpoint.body(), signers)


def split_note(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    """The text of a note and its (key name, key hash + signature) pairs; nothing verified."""
    if not isinstance(note, str) or not note.endswith("\n") or _CONTROL.search(note):
        raise CheckpointError("a note is text ending in a newline, without control characters")
    try:
        note.encode("utf-8")
    except UnicodeEncodeError:
        raise CheckpointError("a note must be valid Unicode text") from None
    cut = note.rfind("\n\n")
    if cut < 0:
        raise CheckpointError("a note needs a blank line between its text and its signatures")
    body, lines = note[: cut + 1], note[cut + 2 : -1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointError(f"a note may carry at most {MAX_SIGNATURES} signatures")
    signatures = []
    for line in lines:
        parts = line.removeprefix(DASH).split(" ")
        if not line.startswith(DASH) or len(parts) != 2:
            raise CheckpointError("a signature line reads '— <key name> <base64 signature>'")
        name, raw = check_name(parts[0]), decode_b64(parts[1], "signature")
        if len(raw) < 5:
            raise CheckpointError("a signature is a 4-byte key hash and the signature itself")
        signatures.append((name, raw))
    return body, signatures


def count_signatures(note: str, verifiers: Sequence[KeyVerifier]) -> int:
    """How many distinct keys among `verifiers` validly signed `note` (a bad signature by one
    of them raises CheckpointError; signatures by other keys are ignored)."""
    return len(_verified(note, verifiers)[1])


def _verified(note: str, verifiers: Sequence[KeyVerifier]) -> tuple[str, set[tuple[str, bytes]]]:
    text, signatures = split_note(note)
    known: dict[tuple[str, bytes], KeyVerifier] = {(v.name, v.key_hash): v for v in verifiers}
    verified: set[tuple[str, bytes]] = set()
    for name, raw in signatures:
        verifier = known.get((name, raw[:4]))
        if verifier is None:
            continue  # a signature by a key we do not know (e.g. a witness): ignored
        if not verifier.verify(text.encode("utf-8"), raw[4:]):
            raise CheckpointError(f"the signature by known key {name!r} does not verify")
        verified.add((name, raw[:4]))
    return text, verified


def open_note(note: str, verifiers: Sequence[KeyVerifier], *, required: int = 1) -> str:
    """The text of `note`, after checking `required` signatures by distinct known keys."""
    if not isinstance(required, int) or required < 1:
        raise CheckpointError("at least one signature must be required")
    text, verified = _verified(note, verifiers)
    if len(verified) < required:
        raise CheckpointError(
            f"note carries {len(verified)} valid signature(s) by known keys, {required} required"
        )
    return text


def open_checkpoint(
    note: str, verifiers: Sequence[KeyVerifier], origin: str, *, required: int = 1
) -> Checkpoint:
    """The checkpoint in `note`, after checking `required` signatures by distinct known keys."""
    checkpoint = Checkpoint.from_body(open_note(note, verifiers, required=required))
    if checkpoint.origin != origin:
        raise CheckpointError(f"checkpoint is for origin {checkpoint.origin!r}, not {origin!r}")
    return checkpoint
