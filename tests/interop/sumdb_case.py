"""The audit artefacts that Go's x/mod sumdb/note and sumdb/tlog check (tests/interop/go).

`build_case()` is deterministic: fixed Ed25519 seeds, fixed event times and a fixed cosignature
timestamp, a real `SqlAuditLog` on SQLite, so the same code always produces the same notes and
proofs. The Go program's answer to it is kept in `fixtures/go_sumdb.json`, which the fast tier
checks without Go; with Go installed, `test_go_sumdb.py` runs the program and compares.
"""

from __future__ import annotations

import base64
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import (
    Actor,
    Checkpoint,
    Event,
    Signer,
    SqlAuditLog,
    Witness,
    cosigner_verifier,
    metadata,
    sign_checkpoint,
    sign_note,
)
from audit.checkpoint import split_note

ORIGIN = "insitu.interop/audit"
FIXTURE = Path(__file__).parent / "fixtures" / "go_sumdb.json"
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
COSIGN_TIME = 1_796_000_000
GO_TIME = 1_796_000_123
SIZES = (1, 8, 13, 37)
INCLUSION = ((0, 1), (0, 8), (5, 8), (12, 13), (0, 37), (20, 37), (36, 37))
CONSISTENCY = ((1, 8), (8, 13), (13, 37), (1, 37), (8, 37), (37, 37))


def _signer(name: str, seed: int) -> Signer:
    return Signer(name, Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32))


LOG_KEY = _signer(ORIGIN, 1)
WITNESS_KEY = _signer("witness.interop/w1", 2)
LEGACY_WITNESS_KEY = _signer("witness.interop/old", 3)
GO_LOG_KEY = _signer(ORIGIN, 1)
GO_WITNESS_KEY = _signer("witness.interop/go", 4)


def _event(n: int) -> Event:
    return Event(
        type="job.accepted" if n % 3 else "job.denied",
        time=T0 + timedelta(seconds=n),
        actor=Actor(f"analyst-{n % 4}", "tax", ("analyst",)),
        action="submit",
        target=f"job:{n}",
        allowed=bool(n % 3),
        rule="p, analyst, tax, template, submit",
        reason=None if n % 3 else "no approved purpose",
        details={"n": n, "parameters": f"hmac-sha256:{n:064x}"},
    )


def _skey(signer: Signer) -> str:
    """x/mod's private key string: PRIVATE+KEY+<name>+<hash>+base64(0x01 || seed)."""
    seed = signer.private_key.private_bytes_raw()
    vkey = signer.verifier().vkey
    key_hash = vkey.split("+", 2)[1]
    material = base64.b64encode(bytes([1]) + seed).decode("ascii")
    return f"PRIVATE+KEY+{signer.name}+{key_hash}+{material}"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def build_case() -> dict[str, Any]:
    """The input the Go program reads (see its header)."""
    with tempfile.TemporaryDirectory() as tmp:
        engine = sa.create_engine(f"sqlite:///{tmp}/audit.db")
        metadata.create_all(engine)
        log = SqlAuditLog(origin=ORIGIN, signer=LOG_KEY, clock=lambda: T0)
        witness = Witness(
            WITNESS_KEY,
            [LOG_KEY.verifier()],
            ORIGIN,
            Path(tmp) / "w.json",
            clock=lambda: COSIGN_TIME,
        )
        notes: list[str] = []
        with engine.begin() as conn:
            previous = 0
            for size in SIZES:
                for n in range(previous, size):
                    log.append(conn, _event(n))
                note = log.checkpoint(conn)
                proof = log.consistency_proof(conn, previous, size) if previous else []
                line = witness.add_checkpoint(previous, proof, note)
                log.add_cosignature(conn, note + line, [cosigner_verifier(WITNESS_KEY)])
                notes.append(log.latest_checkpoint(conn) or "")
                previous = size
            text, _ = split_note(notes[1])
            legacy = notes[1] + sign_note(text, [LEGACY_WITNESS_KEY]).split("\n\n", 1)[1]
            extended = sign_checkpoint(
                Checkpoint(ORIGIN, 13, log.root(conn, 13), ("insitu.interop/ext 1",)), [LOG_KEY]
            )
            leaves = [_b64(body) for body in log.entries(conn, 0, SIZES[-1])]
            inclusion = [
                {"index": i, "size": n, "proof": [_b64(h) for h in log.inclusion_proof(conn, i, n)]}
                for i, n in INCLUSION
            ]
            consistency = [
                {
                    "first": m,
                    "size": n,
                    "proof": [_b64(h) for h in log.consistency_proof(conn, m, n)],
                }
                for m, n in CONSISTENCY
            ]
        engine.dispose()
    return {
        "log_vkey": LOG_KEY.verifier().vkey,
        "witness_vkeys": [witness.vkey],
        "legacy_witness_vkeys": [LEGACY_WITNESS_KEY.verifier().vkey],
        "leaves": leaves,
        "notes": [*notes, legacy, extended],
        "inclusion": inclusion,
        "consistency": consistency,
        "go_log_skey": _skey(GO_LOG_KEY),
        "go_witness_name": GO_WITNESS_KEY.name,
        "go_witness_seed": _b64(GO_WITNESS_KEY.private_key.private_bytes_raw()),
        "go_time": GO_TIME,
        "go_size": 13,
        "go_origin": ORIGIN,
    }
