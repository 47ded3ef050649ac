"""The export bundle: one JSON-lines file an auditor can verify offline.

One JSON object per line, UTF-8, in this order:

    {"format": "insitu-audit-bundle", "v": 1}                      header, exactly once, first
    {"vkey": "<name>+<hex key hash>+<base64 key>"}                 zero or more verifier keys
    {"checkpoint": "<signed note>"}                                zero or more checkpoints
    {"index": 0, "leaf_hash": "<hex>", "body": "<base64>"}         entries, in index order

`leaf_hash` is the hash the log stored; a verifier authenticates it through the signed roots and
compares it with the hash of `body`, so a damaged body is reported at its own index. Readers
check the shape of every line and report a bad entry line with its position. Every line must be
exactly as `write_bundle` writes it (canonical JSON ending in one newline), so any changed byte
fails verification.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final

from audit.errors import VerificationError
from audit.merkle import HASH_SIZE, leaf_hash

__all__ = ["FORMAT", "BundleEntry", "BundleReader", "read_entry", "write_bundle"]

FORMAT: Final = "insitu-audit-bundle"
VERSION: Final = 1
_HEX_HASH = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class BundleEntry:
    """One exported entry: its index, canonical event bytes and the leaf hash the log stored."""

    index: int
    body: bytes
    leaf_hash: bytes

    def __post_init__(self) -> None:
        if self.index < 0 or len(self.leaf_hash) != HASH_SIZE:
            raise ValueError("a bundle entry has a non-negative index and a 32-byte leaf hash")


def _computed(index: int, body: bytes) -> BundleEntry:
    return BundleEntry(index, body, leaf_hash(body))


def _line(document: dict[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


def write_bundle(
    path: str | os.PathLike[str],
    entries: Iterable[bytes | BundleEntry],
    checkpoints: Iterable[str],
    vkeys: Iterable[str],
) -> int:
    """Write a bundle atomically (temp file, fsync, rename); return the number of entries.

    An entry is either a body (numbered by position, leaf hash computed) or a `BundleEntry`
    carrying the index and leaf hash the log stored, which is what an export should pass (a gap
    in the log then shows as a gap in the bundle). Entries are written in the order given.
    """
    target = Path(path)
    temp = target.with_name(target.name + ".tmp")
    count = 0
    try:
        with temp.open("w", encoding="utf-8", newline="\n") as out:
            out.write(_line({"format": FORMAT, "v": VERSION}))
            out.writelines(_line({"vkey": vkey}) for vkey in vkeys)
            out.writelines(_line({"checkpoint": note}) for note in checkpoints)
            for item in entries:
                entry = item if isinstance(item, BundleEntry) else _computed(count, item)
                record = {"index": entry.index, "leaf_hash": entry.leaf_hash.hex()}
                out.write(_line({**record, "body": _b64(entry.body)}))
                count += 1
            out.flush()
            os.fsync(out.fileno())
        temp.replace(target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return count


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _parse(line: str, where: str, index: int | None = None) -> dict[str, Any]:
    try:
        document = json.loads(line)
    except (ValueError, RecursionError):
        raise VerificationError(f"{where} is not JSON", index=index) from None
    if not isinstance(document, dict):
        raise VerificationError(f"{where} is not a JSON object", index=index)
    return document


def _entry(document: dict[str, Any], position: int) -> BundleEntry:
    if set(document) != {"index", "leaf_hash", "body"}:
        raise VerificationError(f"entry line {position} is malformed", index=position)
    index, stored, body = document["index"], document["leaf_hash"], document["body"]
    if not isinstance(stored, str) or not _HEX_HASH.fullmatch(stored):
        raise VerificationError(f"entry {position} has a malformed leaf hash", index=position)
    if not isinstance(body, str):
        raise VerificationError(f"entry {position} has a malformed body", index=position)
    try:
        raw = base64.b64decode(body.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise VerificationError(f"entry {position} body is not base64", index=position) from None
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise VerificationError(f"entry {position} has a malformed index", index=position)
    return BundleEntry(index, raw, bytes.fromhex(stored))


# The exact line `write_bundle` writes; anything else takes the general JSON path.
_ENTRY_LINE = re.compile(
    r'\{"body":"([A-Za-z0-9+/]*={0,2})","index":(0|[1-9][0-9]{0,17}),"leaf_hash":"([0-9a-f]{64})"\}\n'
)


def read_entry(line: str, position: int) -> BundleEntry:
    """The entry on `line`, found at `position`; VerificationError if the line is malformed."""
    match = _ENTRY_LINE.fullmatch(line)
    if match is None:
        document = _parse(line, f"entry line {position}", position)
        entry = _entry(document, position)
        if _line(document) != line:  # every byte of a bundle counts
            raise VerificationError(
                f"entry line {position} is not in canonical form", index=position
            )
        return entry
    body, index, stored = match.groups()
    try:
        raw = base64.b64decode(body, validate=True)
    except binascii.Error:
        raise VerificationError(f"entry {position} body is not base64", index=position) from None
    return BundleEntry(int(index), raw, bytes.fromhex(stored))


class BundleReader:
    """Reads a bundle: header, keys and checkpoints on entry; entries streamed by `entries()`.

    with BundleReader(path) as bundle:
        bundle.vkeys, bundle.checkpoints
        for entry in bundle.entries(): ...
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.vkeys: list[str] = []
        self.checkpoints: list[str] = []
        self._file: IO[str] | None = None
        self._pending: str | None = None

    def __enter__(self) -> BundleReader:
        try:
            self._file = self.path.open("r", encoding="utf-8", newline="\n")
            first = self._file.readline()
            header = _parse(first, "bundle header")
            if header != {"format": FORMAT, "v": VERSION} or _line(header) != first:
                raise VerificationError(f"not an {FORMAT} v{VERSION} file")
            for line in self._file:
                document = _parse(line, "bundle line")
                if _line(document) != line:
                    raise VerificationError("a key or checkpoint line is not in canonical form")
                if set(document) == {"vkey"} and isinstance(document["vkey"], str):
                    if self.checkpoints:
                        raise VerificationError("vkey lines must come before checkpoints")
                    self.vkeys.append(document["vkey"])
                elif set(document) == {"checkpoint"} and isinstance(document["checkpoint"], str):
                    self.checkpoints.append(document["checkpoint"])
                else:
                    self._pending = line
                    break
        except UnicodeDecodeError:
            self.close()
            raise VerificationError("bundle is not UTF-8 text") from None
        except OSError as exc:
            self.close()
            raise VerificationError(f"cannot read the bundle: {exc.strerror}") from None
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def entries(self) -> Iterator[BundleEntry]:
        """The entry lines, in file order; raises VerificationError naming a malformed one."""
        for position, line in enumerate(self.entry_lines()):
            yield read_entry(line, position)

    def entry_lines(self) -> Iterator[str]:
        """The raw entry lines, in file order (UTF-8 already checked); `read_entry` parses one."""
        if self._file is None:
            raise RuntimeError("use BundleReader as a context manager")
        position = 0
        lines = self._file
        try:
            if self._pending is not None:
                pending, self._pending = self._pending, None
                yield pending
                position += 1
            for line in lines:
                yield line
                position += 1
        except UnicodeDecodeError:
            raise VerificationError(f"entry {position} is not UTF-8", index=position) from None
