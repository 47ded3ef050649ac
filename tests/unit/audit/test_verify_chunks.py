"""Chunked verification: the same outcome in one process, in several, and leaf by leaf.

Chunks are made tiny (4 entries) so that bundles of a few dozen entries cross many chunk
boundaries, with signed sizes on, just before and just after them. A plain leaf-by-leaf pass
written here (`reference`) is the oracle: the chunked verifier must report the same first
failure (same index; same message for failures without an index) or the same report.
"""

from __future__ import annotations

import io
import random
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import audit.verify_entries
from audit import (
    BundleReader,
    Checkpoint,
    Signer,
    VerificationError,
    encode,
    leaf_hash,
    root_from_leaf_hashes,
    sign_checkpoint,
    verify_bundle,
    write_bundle,
)
from audit.checkpoint import NoteVerifier, open_checkpoint
from audit.merkle import EMPTY_ROOT
from audit.tree import CompactRange
from audit.verify import CheckpointSet, check_entry, open_checkpoints
from audit.verify_entries import Chunk, checked_tree, chunks, file_identity
from tests.unit.audit._support import ORIGIN, make_event

LEVEL = 2  # chunks of 4 entries
Lines = list[bytes]
Outcome = tuple[str, ...]


@pytest.fixture(scope="module")
def key() -> Signer:
    return Signer.generate(ORIGIN)


@pytest.fixture(autouse=True)
def tiny_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit.verify_entries, "CHUNK_LEVEL", LEVEL)


def bodies(n: int, salt: int = 0) -> list[bytes]:
    return [encode(make_event(i + salt)) for i in range(n)]


def note(key: Signer, entries: list[bytes], size: int) -> str:
    root = root_from_leaf_hashes([leaf_hash(b) for b in entries[:size]])
    return sign_checkpoint(Checkpoint(ORIGIN, size, root), [key])


def make_bundle(path: Path, key: Signer, n: int, sizes: list[int]) -> Path:
    entries = bodies(n)
    write_bundle(path, entries, [note(key, entries, s) for s in sizes], [key.verifier().vkey])
    return path


def reference(path: Path, pin: str | None = None) -> Outcome:
    """A leaf-by-leaf pass over the same checks (the verifier before chunking)."""
    try:
        with BundleReader(path) as bundle:
            verifiers = [NoteVerifier.from_vkey(v) for v in bundle.vkeys]
            pinned = open_checkpoint(pin, verifiers, ORIGIN) if pin else None
            signed = CheckpointSet(open_checkpoints(bundle.checkpoints, verifiers, ORIGIN), pinned)
            signed.check(0, EMPTY_ROOT)
            tree = CompactRange()
            for position, entry in enumerate(bundle.entries()):
                check_entry(position, entry.index, entry.body, entry.leaf_hash)
                tree.append(entry.leaf_hash)
                if tree.size in signed:
                    signed.check(tree.size, tree.root())
            signed.finish(tree.size)
            return ("ok", str(tree.size), tree.root().hex())
    except VerificationError as exc:
        return ("failed", str(exc.index), "" if exc.index is not None else str(exc))


def outcome(path: Path, workers: int, pin: str | None = None) -> Outcome:
    try:
        report = verify_bundle(path, pin=pin, workers=workers)
    except VerificationError as exc:
        return ("failed", str(exc.index), str(exc))
    return ("ok", str(report.size), report.root.hex())


def same_as_reference(mine: Outcome, oracle: Outcome) -> bool:
    if oracle[0] == "ok" or oracle[1] == "None":
        return mine == oracle
    return mine[:2] == oracle[:2]


def edit(path: Path, change: Callable[[Lines], Lines]) -> Path:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(change(lines)))
    return path


def first_entry(lines: Lines) -> int:
    return next(i for i, line in enumerate(lines) if line.startswith(b'{"body":'))


def at(offset: int, change: Callable[[Lines, int], Lines]) -> Callable[[Lines], Lines]:
    return lambda ls: change(ls, first_entry(ls) + offset)


def flip(ls: Lines, i: int) -> Lines:
    ls[i] = ls[i].replace(b'"action":"submit"', b'"action":"sUbmit"')
    return ls


def delete(ls: Lines, i: int) -> Lines:
    return ls[:i] + ls[i + 1 :]


def duplicate(ls: Lines, i: int) -> Lines:
    return [*ls[: i + 1], ls[i], *ls[i + 1 :]]


def swap(ls: Lines, i: int) -> Lines:
    ls[i], ls[i + 1] = ls[i + 1], ls[i]
    return ls


CHANGES: dict[str, Callable[[Lines], Lines]] = {
    "untouched": lambda ls: ls,
    "flipped in chunk 2": at(9, flip),
    "flipped first of a chunk": at(8, flip),
    "flipped last of a chunk": at(7, flip),
    "deleted": at(5, delete),
    "duplicated across a boundary": at(3, duplicate),
    "reordered across a boundary": at(11, swap),
    "truncated mid-line": lambda ls: [*ls[:-3], ls[-3][:40]],
    "truncated at a boundary": lambda ls: ls[: first_entry(ls) + 16],
    "no final newline": lambda ls: [*ls[:-1], ls[-1][:-1]],
    "hostile line": at(6, lambda ls, i: [*ls[:i], b'{"body":[1e999],"index":6}\n', *ls[i + 1 :]]),
}


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_one_and_two_processes_and_leaf_by_leaf_agree(
    tmp_path: Path, key: Signer, name: str
) -> None:
    path = make_bundle(tmp_path / "b.jsonl", key, 21, [3, 4, 8, 9, 16, 20, 21])
    edit(path, CHANGES[name])
    one, two = outcome(path, 1), outcome(path, 2)
    assert one == two
    assert same_as_reference(one, reference(path)), (one, reference(path))
    assert (one[0] == "ok") == (name == "untouched")


def test_a_bad_checkpoint_before_a_bad_entry_is_reported_first(tmp_path: Path, key: Signer) -> None:
    entries = bodies(20)
    forged = sign_checkpoint(Checkpoint(ORIGIN, 8, leaf_hash(b"not the root")), [key])
    path = tmp_path / "b.jsonl"
    write_bundle(path, entries, [forged, note(key, entries, 20)], [key.verifier().vkey])
    edit(path, at(13, flip))  # a bad entry in a later chunk
    for workers in (1, 2):
        assert outcome(path, workers) == (
            "failed",
            "None",
            "the first 8 entries do not match the signed checkpoint of size 8",
        )
    edit(path, at(7, flip))  # now the entry before size 8 is bad: it comes first
    assert outcome(path, 1) == outcome(path, 2) == reference(path)[:2] + outcome(path, 1)[2:]
    assert outcome(path, 1)[1] == "7"


def test_a_pinned_rewrite_is_found_in_every_mode(tmp_path: Path, key: Signer) -> None:
    original = bodies(17)
    pin = note(key, original, 12)  # at a chunk boundary
    rewritten = [*original[:10], *bodies(7, salt=100)]
    path = tmp_path / "b.jsonl"
    write_bundle(path, rewritten, [note(key, rewritten, 17)], [key.verifier().vkey])
    expected = (
        "failed",
        "None",
        "history rewritten: the entries do not match the pinned checkpoint of size 12",
    )
    assert outcome(path, 1, pin) == outcome(path, 2, pin) == reference(path, pin) == expected
    assert outcome(path, 1, note(key, rewritten, 11))[0] == "ok"


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.sampled_from([0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33]),
    data=st.data(),
)
def test_any_size_and_any_signed_sizes_verify_like_leaf_by_leaf(
    tmp_path_factory: pytest.TempPathFactory, key: Signer, n: int, data: st.DataObject
) -> None:
    sizes = data.draw(st.lists(st.integers(0, n), min_size=1, max_size=5), label="sizes")
    path = make_bundle(tmp_path_factory.mktemp("any") / "b.jsonl", key, n, sizes)
    if n and data.draw(st.booleans(), label="damage"):
        victim = data.draw(st.integers(0, n - 1), label="victim")
        op = data.draw(st.sampled_from([flip, delete, duplicate]), label="op")
        edit(path, at(victim, op))
    assert same_as_reference(outcome(path, 1), reference(path))


def test_chunks_start_on_aligned_entries_and_carry_their_signed_sizes(
    tmp_path: Path, key: Signer
) -> None:
    data = b"".join(b"line %d\n" % i for i in range(11)) + b"tail"
    found = list(chunks(io.BufferedReader(io.BytesIO(data)), 0, [4, 5, 8, 12, 13], 2))  # type: ignore[arg-type]
    assert [(c.start, c.lines, c.sizes) for c in found] == [
        (0, 4, (4,)),
        (4, 4, (5, 8)),
        (8, 4, (12,)),
    ]
    assert data[found[1].begin : found[1].end] == b"line 4\nline 5\nline 6\nline 7\n"
    assert found[-1].end == len(data)
    assert list(chunks(io.BufferedReader(io.BytesIO(b"")), 0, [], 2)) == []  # type: ignore[arg-type]
    exact = b"".join(b"x\n" for _ in range(8))
    found = list(chunks(io.BufferedReader(io.BytesIO(exact)), 0, [8], 1))  # type: ignore[arg-type]
    assert [(c.start, c.lines) for c in found] == [(0, 2), (2, 2), (4, 2), (6, 2)]
    assert found[-1] == Chunk(12, 16, 6, 2, (8,))


def test_big_chunks_and_a_bundle_smaller_than_one_chunk(
    tmp_path: Path, key: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_bundle(tmp_path / "b.jsonl", key, 300, [1, 128, 256, 257, 300])
    for level in (0, 1, 7, 8, 9, 14):
        monkeypatch.setattr(audit.verify_entries, "CHUNK_LEVEL", level)
        assert outcome(path, 1) == reference(path)
    monkeypatch.setattr(audit.verify_entries, "CHUNK_LEVEL", 5)
    assert outcome(path, 3) == reference(path)


def test_the_bundle_changing_under_the_verifier_fails_closed(tmp_path: Path, key: Signer) -> None:
    path = make_bundle(tmp_path / "b.jsonl", key, 9, [9])
    with BundleReader(path) as bundle:
        planned = list(chunks(bundle.file, bundle.entries_offset, [9], LEVEL))
    path.write_bytes(path.read_bytes()[: planned[1].begin + 10])  # cut short after planning
    count, hashes, _, error = audit.verify_entries.check_chunk(str(path), planned[1])
    assert (count, hashes) == (0, ())
    assert error is not None and "changed" in error[0]


@settings(max_examples=150, deadline=None)
@given(line=st.binary(max_size=120), index=st.integers(0, 3))
def test_hostile_entry_lines_raise_only_verification_errors(line: bytes, index: int) -> None:
    body = encode(make_event(index))
    candidates = [
        line,
        b'{"body":'
        + line
        + b',"index":%d,"leaf_hash":"%s"}' % (index, leaf_hash(body).hex().encode()),
        b'{"body":' + body + line,
        line.replace(b"\n", b""),
    ]
    rng = random.Random(line)
    for candidate in candidates:
        data = b"".join(c + b"\n" for c in [candidate, body][: rng.randint(1, 2)])
        count, _, _, error = check_bytes(data)
        assert error is None or error[1] == count  # reported at the first bad entry


def check_bytes(data: bytes) -> audit.verify_entries.ChunkResult:
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as file:
        file.write(data)
        file.flush()
        lines = data.count(b"\n") + (not data.endswith(b"\n"))
        return audit.verify_entries.check_chunk(file.name, Chunk(0, len(data), 0, lines, ()))


def test_an_empty_bundle_verifies_alike_in_every_mode(tmp_path: Path, key: Signer) -> None:
    path = make_bundle(tmp_path / "empty.jsonl", key, 0, [0])
    expected = ("ok", "0", EMPTY_ROOT.hex())
    assert outcome(path, 1) == outcome(path, 2) == reference(path) == expected
    edit(path, lambda ls: [*ls, b"\n"])  # one empty entry line
    assert outcome(path, 1) == outcome(path, 2)
    assert outcome(path, 1)[:2] == ("failed", "0")


def test_a_bundle_replaced_during_verification_is_reported_as_changed(
    tmp_path: Path, key: Signer
) -> None:
    # Chunks are read by opening the bundle by name, not through the handle its checkpoints
    # were read from and its chunks planned on: a file renamed over it (here a damaged copy of
    # the same size) must not be read with that plan, nor blamed on an entry.
    path = make_bundle(tmp_path / "b.jsonl", key, 21, [8, 21])
    other = tmp_path / "other.jsonl"
    other.write_bytes(path.read_bytes().replace(b"submit", b"sUbmit"))
    with BundleReader(path) as bundle:
        verifiers = [NoteVerifier.from_vkey(v) for v in bundle.vkeys]
        signed = CheckpointSet(open_checkpoints(bundle.checkpoints, verifiers, ORIGIN))
        other.replace(path)
        for workers in (1, 2):
            with pytest.raises(VerificationError) as caught:
                checked_tree(str(path), bundle.file, bundle.entries_offset, signed, workers=workers)
            message = "the bundle changed while it was being verified"
            assert (str(caught.value), caught.value.index) == (message, None)


def test_a_bundle_rewritten_after_planning_is_reported_as_changed(
    tmp_path: Path, key: Signer
) -> None:
    path = make_bundle(tmp_path / "b.jsonl", key, 21, [8, 21])
    newer = make_bundle(tmp_path / "newer.jsonl", key, 23, [4, 8, 21, 23]).read_bytes()
    with BundleReader(path) as bundle:
        identity = file_identity(bundle.file.fileno())
        planned = list(chunks(bundle.file, bundle.entries_offset, [8, 21], LEVEL))
        path.write_bytes(newer)  # in place: same file, other size
        for chunk in planned:
            result = audit.verify_entries.check_chunk(str(path), chunk, identity)
            assert result[3] == ("the bundle changed while it was being verified", None)
