"""A witness: cosigns a log's checkpoints only as consistent extensions of what it saw before.

    state (a JSON file the witness alone keeps):  {"origin", "size", "root", "note"}

    cosign(note, proof):
        open the note with the log's keys           (else refuse: not the log's checkpoint)
        size < last size                            → refuse: rollback
        size == last size, root differs             → refuse: fork (equivocation)
        size > last size, proof does not verify     → refuse: fork (history rewritten)
        save the new state (durably), then return the note with the witness's signature added

The first checkpoint is trusted on first use. The state is written (temp file, fsync, rename)
before the cosignature is returned, so a crash never leaves a cosigned checkpoint the state does
not know. A cosignature is an ordinary Ed25519 signed-note signature by the witness's key over
the checkpoint text (not the timestamped C2SP cosignature/v1 format).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from audit.checkpoint import (
    Checkpoint,
    NoteVerifier,
    Signer,
    open_checkpoint,
    sign_note,
    split_note,
)
from audit.errors import AuditError, CheckpointError, ProofError, VerificationError
from audit.merkle import verify_consistency

__all__ = ["Witness", "WitnessRefusal"]


class WitnessRefusal(VerificationError):
    """The witness refuses to cosign (`kind`: "rollback", "fork", "invalid")."""

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class _State:
    size: int
    root: bytes
    note: str


class Witness:
    """One witness of one log origin, with its state file and signing key."""

    def __init__(
        self,
        signer: Signer,
        log_keys: Sequence[NoteVerifier],
        origin: str,
        state_path: str | os.PathLike[str],
    ) -> None:
        if not log_keys:
            raise CheckpointError("a witness needs the log's verifier key(s)")
        self.signer = signer
        self.log_keys = list(log_keys)
        self.origin = origin
        self.path = Path(state_path)

    def last(self) -> Checkpoint | None:
        """The checkpoint the witness last cosigned (None before the first)."""
        state = self._load()
        return None if state is None else Checkpoint(self.origin, state.size, state.root)

    def _load(self) -> _State | None:
        if not self.path.exists():
            return None
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            if doc["origin"] != self.origin:
                raise VerificationError("the witness state is for another origin")
            root = base64.b64decode(doc["root"], validate=True)
            return _State(
                int(doc["size"]),
                Checkpoint(self.origin, int(doc["size"]), root).root,
                str(doc["note"]),
            )
        except (OSError, ValueError, KeyError, TypeError, binascii.Error, AuditError) as exc:
            raise VerificationError(f"the witness state cannot be read: {exc}") from None

    def _save(self, cp: Checkpoint, note: str) -> None:
        doc = {
            "origin": self.origin,
            "size": cp.size,
            "root": base64.b64encode(cp.root).decode("ascii"),
            "note": note,
        }
        temp = self.path.with_name(self.path.name + ".tmp")
        with temp.open("w", encoding="utf-8") as out:
            json.dump(doc, out)
            out.flush()
            os.fsync(out.fileno())
        temp.replace(self.path)
        if hasattr(os, "O_DIRECTORY"):
            fd = os.open(self.path.parent, os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def cosign(self, note: str, proof: Sequence[bytes] = ()) -> str:
        """The note with the witness's signature added, or `WitnessRefusal`."""
        try:
            cp = open_checkpoint(note, self.log_keys, self.origin)
        except AuditError as exc:
            raise WitnessRefusal(
                f"not a valid checkpoint of the log: {exc}", kind="invalid"
            ) from None
        last = self._load()
        if last is not None:
            if cp.size < last.size:
                raise WitnessRefusal(
                    f"rollback: the log shows size {cp.size} after size {last.size}",
                    kind="rollback",
                )
            if cp.size == last.size and cp.root != last.root:
                raise WitnessRefusal(
                    f"fork: two checkpoints of size {cp.size} with different roots", kind="fork"
                )
            if cp.size > last.size:
                try:
                    verify_consistency(last.size, cp.size, proof, last.root, cp.root)
                except ProofError as exc:
                    raise WitnessRefusal(
                        f"fork: size {cp.size} is not an extension of size {last.size} ({exc})",
                        kind="fork",
                    ) from None
        text, _ = split_note(note)
        cosigned = note + sign_note(text, [self.signer])[len(text) + 1 :]
        self._save(cp, cosigned)
        return cosigned
