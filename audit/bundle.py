"""The export bundle: one JSON-lines file an auditor can verify offline (format version 2).

One JSON object per line, UTF-8, in this order:

    {"format":"insitu-audit-bundle","v":2}                          header, exactly once, first
    {"vkey":"<name>+<hex key hash>+<base64 key>"}                  zero or more verifier keys
    {"checkpoint":"<signed note>"}                                 zero or more checkpoints
    {"body":<event>,"index":0,"leaf_hash":"<hex>"}                 entries, in index order

`body` is the entry's canonical event bytes written as they are (canonical JSON, so the line is
canonical JSON too); `leaf_hash` is the hash the log stored. A verifier authenticates the leaf
hash through the signed roots and compares it with the hash of `body`, so a damaged body is
reported at its own index. Every line must be exactly as `write_bundle` writes it (canonical JSON
ending in one newline), so any changed byte fails verification. Version 1 (base64 bodies) is not
read: export the bundle again.
"""

from __future__ import annotations

import binascii
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from io import BufferedReader
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from audit.errors import VerificationError
from audit.merkle import HASH_SIZE, leaf_hash

__all__ = [
    "FORMAT",
    "VERSION",
    "BundleEntry",
    "BundleReader",
    "parse_entry_line",
    "read_entry",
    "write_bundle",
]

FORMAT: Final = "insitu-audit-bundle"
VERSION: Final = 2
_HEX_HASH = re.compile(r"[0-9a-f]{64}")
_BODY: Final = b'{"body":'
_INDEX: Final = b',"index":'
_HASH: Final = b',"leaf_hash":"'
_TAIL_LENGTH: Final = len(_HASH) + 2 * HASH_SIZE + 2  # ,"leaf_hash":"<hex>"}


@dataclass(frozen=True, slots=True)
class BundleEntry:
    """One exported entry: its index, canonical event bytes and the leaf hash the log stored."""

    index: int
    body: bytes
    leaf_hash: bytes

    def __post_init__(self) -> None:
        if self.index < 0 or len(self.leaf_hash) != HASH_SIZE:
            raise ValueError("a bundle entry has a non-negative index and a 32-byte leaf hash")


def _line(document: dict[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


def _encoded(document: dict[str, Any]) -> bytes:
    return _line(document).encode("utf-8")


def _written_as(document: dict[str, Any], line: bytes) -> bool:
    """`line` is exactly how `document` is written (a parsed lone surrogate, from an escape,
    has no UTF-8 form, so such a line never is)."""
    try:
        return _encoded(document) == line
    except UnicodeEncodeError:
        return False


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
    Bodies are written byte for byte: a body that is not canonical JSON (a damaged log) makes
    its line, and so the bundle, fail verification at that entry.
    """
    target = Path(path)
    temp = target.with_name(target.name + ".tmp")
    count = 0
    try:
        with temp.open("wb") as out:
            out.write(_encoded({"format": FORMAT, "v": VERSION}))
            out.writelines(_encoded({"vkey": vkey}) for vkey in vkeys)
            out.writelines(_encoded({"checkpoint": note}) for note in checkpoints)
            for item in entries:
                if isinstance(item, BundleEntry):
                    index, body, stored = item.index, item.body, item.leaf_hash
                else:
                    index, body, stored = count, item, leaf_hash(item)
                out.write(
                    b'%s%s,"index":%d,"leaf_hash":"%s"}\n'
                    % (_BODY, body, index, stored.hex().encode())
                )
                count += 1
            out.flush()
            os.fsync(out.fileno())
        temp.replace(target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return count


def _parse(line: bytes, where: str, index: int | None = None) -> Any:
    try:
        return json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise VerificationError(f"{where} is not UTF-8", index=index) from None
    except (ValueError, RecursionError):
        raise VerificationError(f"{where} is not JSON", index=index) from None


def _malformed(line: bytes, position: int) -> VerificationError:
    """Why the entry line at `position` (newline excluded) is not as `write_bundle` writes it."""
    where = f"entry line {position}"
    try:
        document = _parse(line, where, position)
    except VerificationError as exc:
        return exc
    if not isinstance(document, dict) or set(document) != {"index", "leaf_hash", "body"}:
        return VerificationError(f"{where} is malformed", index=position)
    index, stored = document["index"], document["leaf_hash"]
    if not isinstance(stored, str) or not _HEX_HASH.fullmatch(stored):
        return VerificationError(f"entry {position} has a malformed leaf hash", index=position)
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        return VerificationError(f"entry {position} has a malformed index", index=position)
    return VerificationError(f"{where} is not in canonical form", index=position)


def parse_entry_line(line: bytes, position: int) -> tuple[int, bytes, bytes]:
    """(index, body, stored leaf hash) of the entry line at `position` (its newline excluded);
    VerificationError(index=position) unless everything but the body is exactly as written.
    The body is returned unchecked: the line is canonical if and only if the body is canonical
    JSON, which a verifier checks anyway (`audit.events.check_encoded` is stricter)."""
    # {"body":<body>,"index":<digits>,"leaf_hash":"<64 lowercase hex>"}  by fixed offsets
    cut = line.rfind(_INDEX)
    digits, hexed = line[cut + len(_INDEX) : -_TAIL_LENGTH], line[-66:-2]
    if (
        cut > len(_BODY)
        and line.startswith(_BODY)
        and line[-_TAIL_LENGTH:-66] == _HASH
        and line.endswith(b'"}')
        and 0 < len(digits) <= 18
        and digits.isdigit()  # ASCII digits only, for bytes
        and (digits[0] != ord("0") or len(digits) == 1)
        and (hexed.islower() or hexed.isdigit())  # no uppercase hex
    ):
        try:
            return int(digits), line[len(_BODY) : cut], binascii.unhexlify(hexed)
        except binascii.Error:
            pass
    raise _malformed(line, position)


def read_entry(line: str, position: int) -> BundleEntry:
    """The entry on `line` (ending in its newline), found at `position`; VerificationError if
    the line is not exactly as `write_bundle` writes it (the body must be canonical JSON)."""
    try:
        raw = line.encode("utf-8")
    except UnicodeEncodeError:
        raise VerificationError(f"entry {position} is not UTF-8", index=position) from None
    if not raw.endswith(b"\n"):
        raise VerificationError(f"entry line {position} does not end a line", index=position)
    index, body, stored = parse_entry_line(raw[:-1], position)
    document = _parse(body, f"entry {position} body", position)
    if not _written_as(document, body + b"\n"):
        raise VerificationError(f"entry line {position} is not in canonical form", index=position)
    return BundleEntry(index, body, stored)


class BundleReader:
    """Reads a bundle: header, keys and checkpoints on entry; entries streamed by `entries()`.

    with BundleReader(path) as bundle:
        bundle.vkeys, bundle.checkpoints, bundle.entries_offset
        for entry in bundle.entries(): ...

    `entries_offset` is the byte offset of the first entry line (the file's size if none).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.vkeys: list[str] = []
        self.checkpoints: list[str] = []
        self.entries_offset = 0
        self._file: BufferedReader | None = None

    def __enter__(self) -> BundleReader:
        try:
            self._file = self.path.open("rb")
            self._read_head(self._file)
        except OSError as exc:
            self.close()
            raise VerificationError(f"cannot read the bundle: {exc.strerror}") from None
        except BaseException:
            self.close()
            raise
        return self

    def _read_head(self, file: BufferedReader) -> None:
        first = file.readline()
        header = _parse(first, "bundle header") if first.startswith(b"{") else None
        expected = {"format": FORMAT, "v": VERSION}
        if isinstance(header, dict) and header.get("format") == FORMAT and header != expected:
            version = header.get("v")
            shown = f"v{version}" if type(version) is int else "an unknown version"
            raise VerificationError(
                f"this is an {FORMAT} {shown} file; this verifier reads v{VERSION} only "
                "(export the bundle again)"
            )
        if header != expected or _encoded(header) != first:
            raise VerificationError(f"not an {FORMAT} v{VERSION} file")
        while True:
            self.entries_offset = file.tell()
            line = file.readline()
            if not line or line.startswith(_BODY):
                break
            try:
                document = _parse(line, "bundle line")
            except VerificationError:
                break  # reported as the first entry line
            if not isinstance(document, dict) or len(document) != 1:
                break
            ((kind, value),) = document.items()
            if kind not in ("vkey", "checkpoint") or not isinstance(value, str):
                break
            if not _written_as(document, line):
                raise VerificationError("a key or checkpoint line is not in canonical form")
            if kind == "vkey":
                if self.checkpoints:
                    raise VerificationError("vkey lines must come before checkpoints")
                self.vkeys.append(value)
            else:
                self.checkpoints.append(value)
        file.seek(self.entries_offset)

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

    @property
    def file(self) -> BufferedReader:
        """The open bundle file (binary); entry lines start at `entries_offset`."""
        if self._file is None:
            raise RuntimeError("use BundleReader as a context manager")
        return self._file

    def entries(self) -> Iterator[BundleEntry]:
        """The entry lines, in file order; raises VerificationError naming a malformed one."""
        for position, line in enumerate(self.entry_lines()):
            yield read_entry(line, position)

    def entry_lines(self) -> Iterator[str]:
        """The raw entry lines, in file order (UTF-8 checked); `read_entry` parses one."""
        if self._file is None:
            raise RuntimeError("use BundleReader as a context manager")
        self._file.seek(self.entries_offset)
        for position, line in enumerate(self._file):
            try:
                yield line.decode("utf-8")
            except UnicodeDecodeError:
                raise VerificationError(f"entry {position} is not UTF-8", index=position) from None
