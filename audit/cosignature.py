"""C2SP tlog-cosignature `cosignature/v1` (Ed25519): a witness's timestamped statement about a
checkpoint.

    key hash  = SHA-256(<name> || "\\n" || 0x04 || 32-byte Ed25519 public key)[:4]
    vkey      = <name>+<hex key hash>+<base64(0x04 || public key)>
    signature = base64(key hash || u64 big-endian timestamp || 64-byte Ed25519 signature)
    message   = "cosignature/v1\\n" || "time <timestamp>\\n" || the whole checkpoint note text

`witness_key(vkey)` reads either kind of witness key: type 0x04 gives a `CosignatureVerifier`;
type 0x01 gives a plain `NoteVerifier`, which still verifies the untimestamped witness
signatures insitu wrote before cosignature/v1 (kept in stored notes and old bundles). The two
kinds have different key hashes, so a signature is only ever checked as the kind it claims.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.checkpoint import DASH, ED25519, NoteVerifier, Signer, check_name, decode_b64
from audit.errors import CheckpointError

__all__ = [
    "COSIGNATURE_V1",
    "CosignatureVerifier",
    "cosign",
    "cosigned_message",
    "cosigner_verifier",
    "witness_key",
]

COSIGNATURE_V1: Final = 0x04
MAX_TIMESTAMP: Final = 2**63 - 1
_SIGNATURE_SIZE: Final = 8 + 64


def cosigned_message(text: str, timestamp: int) -> bytes:
    """The bytes a cosignature/v1 signs: header line, time line, then the note text."""
    if not isinstance(timestamp, int) or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise CheckpointError("a cosignature timestamp is between 0 and 2**63 - 1")
    if len(text.split("\n")) < 4 or not text.endswith("\n"):
        raise CheckpointError("a cosigned note text has at least three lines")
    return f"cosignature/v1\ntime {timestamp}\n{text}".encode()


@dataclass(frozen=True, slots=True)
class CosignatureVerifier:
    """A witness's named Ed25519 key that checks cosignature/v1 signatures."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        check_name(self.name)
        if not isinstance(self.public_key, bytes) or len(self.public_key) != 32:
            raise CheckpointError("an Ed25519 public key is 32 bytes")

    @property
    def key_hash(self) -> bytes:
        material = bytes([COSIGNATURE_V1]) + self.public_key
        return hashlib.sha256(self.name.encode() + b"\n" + material).digest()[:4]

    @property
    def vkey(self) -> str:
        key = base64.b64encode(bytes([COSIGNATURE_V1]) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_hash.hex()}+{key}"

    @staticmethod
    def timestamp(signature: bytes) -> int:
        """The timestamp inside a signature (key hash removed); CheckpointError if malformed."""
        if len(signature) != _SIGNATURE_SIZE:
            raise CheckpointError("a cosignature/v1 is an 8-byte timestamp and 64 bytes")
        value: int = struct.unpack(">Q", signature[:8])[0]
        if value > MAX_TIMESTAMP:
            raise CheckpointError("a cosignature timestamp is at most 2**63 - 1")
        return value

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether `signature` (timestamp || Ed25519 signature) cosigns the note text `message`."""
        try:
            signed = cosigned_message(message.decode("utf-8"), self.timestamp(signature))
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature[8:], signed)
        except (CheckpointError, InvalidSignature, UnicodeDecodeError, ValueError):
            return False
        return True


def witness_key(vkey: str) -> NoteVerifier | CosignatureVerifier:
    """A witness vkey of type 0x04 (cosignature/v1) or 0x01 (plain note signatures, legacy)."""
    parts = vkey.split("+", 2) if isinstance(vkey, str) else []
    if len(parts) != 3 or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
        raise CheckpointError("a vkey reads <name>+<8 hex digits>+<base64 key>")
    raw = decode_b64(parts[2], "vkey key")
    if raw[:1] == bytes([ED25519]):
        return NoteVerifier.from_vkey(vkey)
    if len(raw) != 33 or raw[0] != COSIGNATURE_V1:
        raise CheckpointError("a witness vkey is an Ed25519 key of type 0x04 (or legacy 0x01)")
    verifier = CosignatureVerifier(parts[0], raw[1:])
    if verifier.key_hash.hex() != parts[1]:
        raise CheckpointError("vkey key hash does not match its name and key")
    return verifier


def cosigner_verifier(signer: Signer) -> CosignatureVerifier:
    """The cosignature/v1 verifier of a witness's signing key."""
    return CosignatureVerifier(signer.name, signer.verifier().public_key)


def cosign(signer: Signer, text: str, timestamp: int) -> str:
    """One cosignature/v1 signature line (ending in a newline) by `signer` over note `text`."""
    signature = signer.sign(cosigned_message(text, timestamp))
    raw = cosigner_verifier(signer).key_hash + struct.pack(">Q", timestamp) + signature
    return f"{DASH}{signer.name} {base64.b64encode(raw).decode('ascii')}\n"
