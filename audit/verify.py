"""Offline verification of an exported bundle, and the `python -m audit.verify` command.

    python -m audit.verify BUNDLE [--pin FILE] [--vkey VKEY]... [--origin O] [--required K]
                           [--witness VKEY]... [--cosignatures K]

prints one line and exits 0 (verified), 1 (verification failed) or 2 (usage error). Nothing here
touches a database: every leaf hash, every root and every signature is recomputed from the file.

What is checked, in one pass over the entries (in aligned chunks, in one process or several:
`audit.verify_entries`): each entry's position and index agree (catches deleted, duplicated and
reordered lines), each body is a canonical event and hashes to the stored leaf hash, and the tree
over those leaves has the signed root at every checkpoint size. Before the pass: every checkpoint
verifies under the trusted keys, and no two checkpoints of one size have different roots
(equivocation). After it: no checkpoint is larger than the bundle (truncation or rollback). A
`pin` (a checkpoint saved earlier) must match the recomputed tree (else the history was
rewritten) and fit inside the bundle (else the log was rolled back).
"""

from __future__ import annotations

import argparse
import hmac
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from audit.bundle import BundleReader
from audit.checkpoint import Checkpoint, NoteVerifier, count_signatures, open_checkpoint
from audit.cosignature import witness_key
from audit.errors import AuditError, VerificationError
from audit.merkle import EMPTY_ROOT
from audit.verify_entries import check_entry, checked_tree

__all__ = [
    "CheckpointSet",
    "VerifyReport",
    "check_entry",
    "main",
    "open_checkpoints",
    "verify_bundle",
    "witnessed_size",
]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What a successful verification established."""

    size: int  # entries checked
    root: bytes  # Merkle root over all of them
    checkpoints: int  # signed checkpoints verified (a pin included)
    signed_size: int  # the largest verified checkpoint's size; entries past it are unsigned
    witnessed_size: int = 0  # the largest checkpoint with the required witness cosignatures

    def __str__(self) -> str:
        unsigned = self.size - self.signed_size
        tail = f", {unsigned} entries after it not yet signed" if unsigned else ""
        witnessed = f", witnessed up to size {self.witnessed_size}" if self.witnessed_size else ""
        return (
            f"{self.size} entries, root {self.root.hex()}, {self.checkpoints} checkpoint(s) "
            f"verified, signed up to size {self.signed_size}{tail}{witnessed}"
        )


def open_checkpoints(
    notes: Iterable[str], verifiers: Sequence[NoteVerifier], origin: str, *, required: int = 1
) -> list[Checkpoint]:
    """Open every note or raise VerificationError naming the first bad one."""
    opened = []
    for number, note in enumerate(notes):
        try:
            opened.append(open_checkpoint(note, verifiers, origin, required=required))
        except AuditError as exc:
            raise VerificationError(f"checkpoint #{number} does not verify: {exc}") from None
    return opened


class CheckpointSet:
    """Signed roots by size, checked against a tree recomputed leaf by leaf."""

    def __init__(self, checkpoints: Iterable[Checkpoint], pin: Checkpoint | None = None) -> None:
        self.roots: dict[int, bytes] = {}
        self.pin = pin
        every = [*checkpoints, *([pin] if pin else [])]
        for cp in every:
            seen = self.roots.setdefault(cp.size, cp.root)
            if not hmac.compare_digest(seen, cp.root):
                raise VerificationError(
                    f"equivocation: two signed checkpoints of size {cp.size} have different roots"
                )
        self.count = len(every)
        self.signed_size = max(self.roots, default=0)

    def __contains__(self, size: int) -> bool:
        return size in self.roots

    def check(self, size: int, root: bytes) -> None:
        """Raise unless the signed root of `size` (if any) is `root`."""
        signed = self.roots.get(size)
        if signed is None or hmac.compare_digest(signed, root):
            return
        if self.pin is not None and self.pin.size == size:
            raise VerificationError(
                f"history rewritten: the entries do not match the pinned checkpoint of size {size}"
            )
        raise VerificationError(
            f"the first {size} entries do not match the signed checkpoint of size {size}"
        )

    def finish(self, size: int) -> None:
        """Raise if any signed checkpoint is larger than the `size` entries seen."""
        if self.pin is not None and self.pin.size > size:
            raise VerificationError(
                f"rollback: the pinned checkpoint has size {self.pin.size} "
                f"but only {size} entries are present"
            )
        if self.signed_size > size:
            raise VerificationError(
                f"truncated: a signed checkpoint has size {self.signed_size} "
                f"but only {size} entries are present"
            )


def _auto_workers(path: Path) -> int:
    try:
        large = path.stat().st_size > 64_000_000
    except OSError:
        return 1
    return min(os.cpu_count() or 1, 4) if large else 1


def _origin_of(note: str) -> str:
    return note.split("\n", 1)[0]


def witnessed_size(
    notes: Sequence[str], opened: Sequence[Checkpoint], witnesses: Sequence[str], required: int
) -> int:
    """The largest size among checkpoints cosigned by `required` distinct `witnesses`; raises
    VerificationError if none is (when `required` > 0) or a known witness's signature is bad."""
    if required <= 0:
        return 0
    try:
        keys = [witness_key(v) for v in witnesses]
    except AuditError as exc:
        raise VerificationError(f"a witness key is malformed: {exc}") from None
    best = -1
    for number, (note, cp) in enumerate(zip(notes, opened, strict=True)):
        try:
            count = count_signatures(note, keys)
        except AuditError as exc:
            raise VerificationError(f"checkpoint #{number}: {exc}") from None
        if count >= required:
            best = max(best, cp.size)
    if best < 0:
        raise VerificationError(
            f"no checkpoint carries {required} cosignature(s) by the given witness keys"
        )
    return best


def verify_bundle(
    path: str | os.PathLike[str],
    *,
    pin: str | None = None,
    vkeys: Sequence[str] | None = None,
    origin: str | None = None,
    required_signatures: int = 1,
    witnesses: Sequence[str] = (),
    cosignatures: int = 0,
    workers: int | None = 1,
) -> VerifyReport:
    """Verify a bundle offline; return what was established or raise VerificationError.

    With `cosignatures` = k > 0, some checkpoint must also carry k valid cosignatures by
    distinct `witnesses` (vkeys); the report names the largest such size. With `workers` > 1
    (None: one per CPU, up to 4, for bundles over 64 MB) entries are checked in that many
    processes, in aligned chunks whose subtrees this one combines (`audit.verify_entries`);
    the outcome, including which failure is reported, is the same as with one. Worker
    processes are spawned, so a script calling this with `workers` != 1 needs the usual
    `if __name__ == "__main__":` guard.

    `vkeys` are the trusted verifier keys; without them the bundle's own keys are used, which
    proves integrity but not authorship (pass the keys you got out of band). `origin` defaults
    to the origin named by the bundle's first checkpoint (or the pin).
    """
    with BundleReader(path) as bundle:
        try:
            verifiers = [NoteVerifier.from_vkey(v) for v in (vkeys or bundle.vkeys)]
        except AuditError as exc:
            raise VerificationError(f"a verifier key is malformed: {exc}") from None
        notes = bundle.checkpoints
        if not notes and pin is None:
            raise VerificationError("the bundle holds no signed checkpoint")
        origin = origin or _origin_of(notes[0] if notes else pin or "")
        checkpoints = open_checkpoints(notes, verifiers, origin, required=required_signatures)
        witnessed = witnessed_size(notes, checkpoints, witnesses, cosignatures)
        pinned = None
        if pin is not None:
            try:
                pinned = open_checkpoint(pin, verifiers, origin, required=required_signatures)
            except AuditError as exc:
                raise VerificationError(f"the pinned checkpoint does not verify: {exc}") from None
        signed = CheckpointSet(checkpoints, pinned)
        signed.check(0, EMPTY_ROOT)
        if workers is None:
            workers = _auto_workers(Path(path))
        tree = checked_tree(str(path), bundle.file, bundle.entries_offset, signed, workers=workers)
        signed.finish(tree.size)
    return VerifyReport(tree.size, tree.root(), signed.count, signed.signed_size, witnessed)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m audit.verify",
        description="Verify an insitu audit bundle offline. Exit 0 ok, 1 failed, 2 usage error.",
    )
    parser.add_argument("bundle", type=Path, help="the exported bundle (.jsonl)")
    parser.add_argument("--pin", type=Path, help="a checkpoint note you saved earlier")
    parser.add_argument(
        "--vkey",
        action="append",
        default=[],
        help="a trusted verifier key (repeatable); default: the keys inside the bundle",
    )
    parser.add_argument("--origin", help="the log origin to require (default: from the bundle)")
    parser.add_argument(
        "--required", type=int, default=1, help="signatures by distinct trusted keys needed"
    )
    parser.add_argument(
        "--witness", action="append", default=[], help="a witness's vkey (repeatable)"
    )
    parser.add_argument(
        "--cosignatures",
        type=int,
        default=0,
        help="witness cosignatures a checkpoint must carry (needs --witness)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes checking entries (default: one per CPU, up to 4, for large bundles)",
    )
    args = parser.parse_args(argv)
    if args.workers is not None and not 1 <= args.workers <= 64:
        parser.error("--workers must be between 1 and 64")
    if args.required < 1:
        parser.error("--required must be at least 1")
    if args.cosignatures < 0 or args.cosignatures > len(args.witness):
        parser.error("--cosignatures must be between 0 and the number of --witness keys")
    if not args.bundle.is_file():
        parser.error(f"no such bundle file: {args.bundle}")
    try:
        pin = args.pin.read_text(encoding="utf-8") if args.pin else None
    except (OSError, UnicodeDecodeError) as exc:
        parser.error(f"cannot read the pin file: {exc}")
    for vkey, read in [
        *((v, NoteVerifier.from_vkey) for v in args.vkey),
        *((v, witness_key) for v in args.witness),
    ]:
        try:
            read(vkey)
        except AuditError as exc:
            parser.error(f"bad key {vkey[:40]!r}: {exc}")
    try:
        report = verify_bundle(
            args.bundle,
            pin=pin,
            vkeys=args.vkey or None,
            origin=args.origin,
            required_signatures=args.required,
            witnesses=args.witness,
            cosignatures=args.cosignatures,
            workers=args.workers,
        )
    except AuditError as exc:
        index = exc.index if isinstance(exc, VerificationError) else None
        where = "" if index is None else f" at entry {index}"
        print(f"FAILED{where}: {exc}")
        return 1
    trust = "" if args.vkey else " (keys taken from the bundle itself)"
    print(f"OK{trust}: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
