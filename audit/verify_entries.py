"""Checking a bundle's entries: one entry, aligned chunks of them, in one process or several.

The entry section is cut into chunks of 2**CHUNK_LEVEL entries (the last one shorter), so chunk
c holds entries [c * 2**k, (c + 1) * 2**k). This process finds where chunks start (counting
newlines in large blocks, never parsing) and `check_chunk` does everything else for a chunk,
reading its byte range itself (from the file planned on, unchanged, else it fails as changed):
every entry line parsed, its body checked to be a canonical event and hashed, the chunk's own
tree built. It returns the chunk's compact range (one perfect subtree when full) and, for every
signed size inside it, the compact range from the chunk's start to that size, or stops at the
first bad entry. Because chunks start on multiples of 2**k, the tree up to
any size is the prefix's compact range followed by those subtrees (`CompactRange.append_subtree`),
so `checked_tree` checks every signed root in order and raises exactly the failure a
leaf-by-leaf pass would: a signed root that does not match before a bad entry, else that entry.
With one worker the same chunk function runs in this process; with more, in a spawned pool, and
only small tuples cross between processes.
"""

from __future__ import annotations

import bisect
import hmac
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from io import BufferedReader
from typing import NamedTuple, Protocol

from audit.bundle import parse_entry_line
from audit.errors import EventError, VerificationError
from audit.events import check_encoded
from audit.merkle import leaf_hash
from audit.tree import CompactRange

__all__ = ["CHUNK_LEVEL", "Chunk", "check_chunk", "check_entry", "checked_tree"]

CHUNK_LEVEL = 14  # 16,384 entries (about 14 MB of a typical bundle) per chunk
_BLOCK = 1 << 20  # bytes read at a time while looking for chunk boundaries

# (entries checked, their compact range, [(signed size, compact range of [start, size))],
#  the first bad entry's (message, index) or None); exceptions lose `index` when pickled.
ChunkResult = tuple[
    int, tuple[bytes, ...], list[tuple[int, tuple[bytes, ...]]], tuple[str, int | None] | None
]


class Chunk(NamedTuple):
    """Entry lines [start, start + lines) at bytes [begin, end) of the bundle; `sizes` are the
    signed sizes in (start, start + lines]."""

    begin: int
    end: int
    start: int
    lines: int
    sizes: tuple[int, ...]


Checked = tuple[Chunk, ChunkResult]
# (device, inode, size, mtime in ns) of the bundle as planned: a chunk is read by opening the
# bundle by name, and must come from the same, unchanged file.
FileIdentity = tuple[int, int, int, int]


def file_identity(fileno: int) -> FileIdentity:
    stat = os.fstat(fileno)
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


class Roots(Protocol):
    """The signed roots (`audit.verify.CheckpointSet`)."""

    roots: dict[int, bytes]

    def check(self, size: int, root: bytes) -> None: ...


def check_entry(position: int, index: int, body: bytes, stored_hash: bytes) -> str:
    """The event type of the entry found at `position`; VerificationError(index=position)
    unless its index is `position`, its body is a canonical event and it hashes to
    `stored_hash`."""
    if index != position:
        raise VerificationError(
            f"entry {position} is missing or out of order (found index {index})", index=position
        )
    try:
        kind = check_encoded(body)
    except EventError as exc:
        raise VerificationError(f"entry {position}: {exc}", index=position) from None
    if not hmac.compare_digest(leaf_hash(body), stored_hash):
        raise VerificationError(f"entry {position} does not hash to its leaf hash", index=position)
    return kind


def check_chunk(path: str, chunk: Chunk, identity: FileIdentity | None = None) -> ChunkResult:
    """Check the entry lines of `chunk` in the bundle at `path` (see the module docstring);
    with `identity`, also that the file read is still the one planned (`file_identity`)."""
    tree = CompactRange()
    at_sizes: list[tuple[int, tuple[bytes, ...]]] = []
    position = chunk.start
    try:
        try:
            with open(path, "rb") as file:
                file.seek(chunk.begin)
                data = file.read(chunk.end - chunk.begin)
                moved = identity is not None and file_identity(file.fileno()) != identity
        except OSError as exc:
            raise VerificationError(f"cannot read the bundle: {exc.strerror}") from None
        lines = data.split(b"\n")
        unterminated = lines.pop()  # b"" unless the file's last line has no newline
        if moved or len(lines) + (1 if unterminated else 0) != chunk.lines:
            raise VerificationError("the bundle changed while it was being verified")
        sizes = set(chunk.sizes)
        for line in lines:
            index, body, stored = parse_entry_line(line, position)
            check_entry(position, index, body, stored)
            tree.append_subtree(0, stored)
            position += 1
            if position in sizes:
                at_sizes.append((position, tree.hashes))
        if unterminated:
            raise VerificationError(f"entry line {position} has no newline", index=position)
    except VerificationError as exc:
        return position - chunk.start, tree.hashes, at_sizes, (str(exc), exc.index)
    return position - chunk.start, tree.hashes, at_sizes, None


def _levels(count: int) -> list[int]:
    """The levels of the perfect subtrees of an aligned range of `count` leaves, largest first."""
    return [level for level in range(count.bit_length() - 1, -1, -1) if count >> level & 1]


def chunks(file: BufferedReader, offset: int, sizes: Sequence[int], level: int) -> Iterator[Chunk]:
    """The chunks of 2**level entry lines from byte `offset` of `file` (the last may be
    shorter), each with the signed `sizes` (ascending) that fall inside it."""
    span = 1 << level
    buffer = bytearray(_BLOCK)
    file.seek(offset)
    begin, start, seen, read_to, last = offset, 0, 0, offset, 0

    def chunk(end: int, lines: int) -> Chunk:
        inside = sizes[
            bisect.bisect_right(sizes, start) : bisect.bisect_right(sizes, start + lines)
        ]
        return Chunk(begin, end, start, lines, tuple(inside))

    while n := file.readinto(buffer):
        at, last = 0, buffer[n - 1]
        while seen + buffer.count(b"\n", at, n) >= span:
            for _ in range(span - seen):
                at = buffer.find(b"\n", at, n) + 1
            yield chunk(read_to + at, span)
            begin, start, seen = read_to + at, start + span, 0
        seen += buffer.count(b"\n", at, n)
        read_to += n
    if read_to > begin:
        yield chunk(read_to, seen + (last != ord("\n")))


def _results(
    path: str, identity: FileIdentity, planned: Iterator[Chunk], workers: int
) -> Iterator[Checked]:
    if workers <= 1:
        for chunk in planned:
            yield chunk, check_chunk(path, chunk, identity)
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    pending: deque[tuple[Chunk, Future[ChunkResult]]] = deque()
    try:
        for chunk in planned:
            pending.append((chunk, pool.submit(check_chunk, path, chunk, identity)))
            if len(pending) > 2 * workers:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def checked_tree(
    path: str,
    file: BufferedReader,
    offset: int,
    signed: Roots,
    *,
    workers: int = 1,
    level: int | None = None,
) -> CompactRange:
    """The tree over every entry line from byte `offset` of the bundle (`file` open on `path`),
    each entry checked and every signed root (`signed.check`) compared, in order; raises the
    first failure as VerificationError. Chunks hold 2**level entries (default CHUNK_LEVEL)."""
    level = CHUNK_LEVEL if level is None else level
    tree = CompactRange()
    sizes = sorted(size for size in signed.roots if size > 0)
    identity = file_identity(file.fileno())
    for chunk, (count, hashes, at_sizes, error) in _results(
        path, identity, chunks(file, offset, sizes, level), workers
    ):
        for size, partial in at_sizes:
            view = tree.copy()
            for subtree_level, subtree in zip(_levels(size - chunk.start), partial, strict=True):
                view.append_subtree(subtree_level, subtree)
            signed.check(size, view.root())
        if error is not None:
            raise VerificationError(error[0], index=error[1])
        for subtree_level, subtree in zip(_levels(count), hashes, strict=True):
            tree.append_subtree(subtree_level, subtree)
    return tree
