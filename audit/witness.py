"""A witness: cosigns a log's checkpoints only as consistent extensions of what it saw before.

    state (a JSON file the witness alone keeps):  {"origin", "size", "root", "note"}

    add_checkpoint(old_size, proof, note)            (C2SP tlog-witness, under a file lock)
        origin is not the witness's log             → refuse "unknown-origin"   (404)
        no valid signature by a log key             → refuse "unauthorized"     (403)
        old_size > size                             → refuse "bad-request"      (400)
        old_size != last cosigned size (0 if none)  → refuse "conflict"         (409, .size)
        size 0 with a root other than the empty one → refuse "unprocessable"    (422)
        old_size 0 with a non-empty proof           → refuse "unprocessable"    (422)
        old_size == size, root differs              → refuse "unprocessable"    (422, a fork)
        consistency proof does not verify           → refuse "unprocessable"    (422, a fork)
        save the new state (durably), then return one cosignature/v1 signature line

    cosign(note, proof)                             (pull mode: `insitu audit witness`)
        the same checks against the last state, the first checkpoint trusted on first use;
        kinds "invalid", "rollback", "fork"; returns the note with the cosignature appended

The state is written (temp file, fsync, rename) before the cosignature is returned, and the
check and the write happen under one `flock` on a sibling lock file, so concurrent requests
cannot roll the state back. Cosignatures are C2SP `cosignature/v1` (audit.cosignature),
timestamped by `clock` (POSIX seconds).
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from audit.checkpoint import Checkpoint, NoteVerifier, Signer, open_checkpoint, split_note
from audit.cosignature import cosign, cosigner_verifier
from audit.errors import AuditError, CheckpointError, ProofError, VerificationError
from audit.merkle import EMPTY_ROOT, verify_consistency

__all__ = ["Witness", "WitnessRefusal"]


class WitnessRefusal(VerificationError):
    """The witness refuses to cosign. `kind` names why (see the module docstring); for
    "conflict", `size` is the size of the checkpoint the witness last cosigned."""

    def __init__(self, message: str, *, kind: str, size: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.size = size


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
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not log_keys:
            raise CheckpointError("a witness needs the log's verifier key(s)")
        self.signer = signer
        self.log_keys = list(log_keys)
        self.origin = origin
        self.path = Path(state_path)
        self._clock = clock
        self._thread_lock = threading.Lock()

    @property
    def vkey(self) -> str:
        """The witness's cosignature/v1 verifier key (type 0x04)."""
        return cosigner_verifier(self.signer).vkey

    def last(self) -> Checkpoint | None:
        """The checkpoint the witness last cosigned (None before the first)."""
        state = self._load()
        return None if state is None else Checkpoint(self.origin, state.size, state.root)

    def last_note(self) -> str | None:
        """The last cosigned note, with the log's and this witness's signatures."""
        state = self._load()
        return None if state is None else state.note

    def add_checkpoint(self, old_size: int, proof: Sequence[bytes], note: str) -> str:
        """C2SP add-checkpoint: this witness's cosignature line for `note`, or WitnessRefusal."""
        if note.split("\n", 1)[0] != self.origin:
            raise WitnessRefusal("this witness does not know that log", kind="unknown-origin")
        try:
            cp = open_checkpoint(note, self.log_keys, self.origin)
        except AuditError:
            raise WitnessRefusal(
                "no valid signature by the log's key", kind="unauthorized"
            ) from None
        if old_size > cp.size:
            raise WitnessRefusal("old size is larger than the checkpoint", kind="bad-request")
        if cp.size == 0 and cp.root != EMPTY_ROOT:
            raise WitnessRefusal("an empty tree has the empty root", kind="unprocessable")
        if old_size == 0 and proof:
            raise WitnessRefusal("no proof is needed from size 0", kind="unprocessable")
        with self._locked():
            last = self._load()
            last_size = 0 if last is None else last.size
            if old_size != last_size:
                raise WitnessRefusal(
                    f"the witness last cosigned size {last_size}", kind="conflict", size=last_size
                )
            if last is not None:
                self._check_extension(last, cp, proof, kind="unprocessable")
            return self._cosign_and_save(note, cp)

    def cosign(self, note: str, proof: Sequence[bytes] = ()) -> str:
        """The note with the witness's cosignature appended, or `WitnessRefusal`."""
        try:
            cp = open_checkpoint(note, self.log_keys, self.origin)
        except AuditError as exc:
            raise WitnessRefusal(
                f"not a valid checkpoint of the log: {exc}", kind="invalid"
            ) from None
        with self._locked():
            last = self._load()
            if last is not None:
                if cp.size < last.size:
                    raise WitnessRefusal(
                        f"rollback: the log shows size {cp.size} after size {last.size}",
                        kind="rollback",
                    )
                self._check_extension(last, cp, proof, kind="fork")
            return note + self._cosign_and_save(note, cp)

    @staticmethod
    def _check_extension(last: _State, cp: Checkpoint, proof: Sequence[bytes], kind: str) -> None:
        if cp.size == last.size and cp.root != last.root:
            raise WitnessRefusal(
                f"fork: two checkpoints of size {cp.size} with different roots", kind=kind
            )
        if cp.size > last.size:
            try:
                verify_consistency(last.size, cp.size, proof, last.root, cp.root)
            except ProofError as exc:
                raise WitnessRefusal(
                    f"fork: size {cp.size} is not an extension of size {last.size} ({exc})",
                    kind=kind,
                ) from None

    def _cosign_and_save(self, note: str, cp: Checkpoint) -> str:
        text, _ = split_note(note)
        line = cosign(self.signer, text, int(self._clock()))
        self._save(cp, note + line)
        return line

    @contextmanager
    def _locked(self) -> Iterator[None]:
        lock_path = self.path.with_name(self.path.name + ".lock")
        with self._thread_lock, lock_path.open("a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

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
