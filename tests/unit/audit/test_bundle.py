"""Offline bundles: tampering is found at the right index; equivocation, truncation, pins; CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit import (
    BundleEntry,
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
from audit.bundle import parse_entry_line, read_entry
from audit.verify import main
from tests.unit.audit._support import ORIGIN, make_event

N = 24
Lines = list[bytes]


@pytest.fixture(scope="module")
def key() -> Signer:
    return Signer.generate(ORIGIN)


def bodies(n: int = N) -> list[bytes]:
    return [encode(make_event(i)) for i in range(n)]


def note_for(key: Signer, entries: list[bytes], size: int) -> str:
    root = root_from_leaf_hashes([leaf_hash(b) for b in entries[:size]])
    return sign_checkpoint(Checkpoint(ORIGIN, size, root), [key])


@pytest.fixture
def bundle(tmp_path: Path, key: Signer) -> Path:
    entries = bodies()
    notes = [note_for(key, entries, size) for size in (8, 20, N)]
    path = tmp_path / "audit.jsonl"
    assert write_bundle(path, entries, notes, [key.verifier().vkey]) == N
    return path


def canon(record: object) -> bytes:
    """A line as `write_bundle` writes it (a forger who wants the line accepted does too)."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return (text + "\n").encode()


def edit(path: Path, change: Callable[[Lines], Lines]) -> Path:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(change(lines)))
    return path


def entry_lines(lines: Lines) -> int:
    """The position of the first entry line."""
    return next(i for i, line in enumerate(lines) if line.startswith(b'{"body":'))


def failure(path: Path, **kwargs: object) -> VerificationError:
    with pytest.raises(VerificationError) as caught:
        verify_bundle(path, **kwargs)  # type: ignore[arg-type]
    return caught.value


def test_an_untouched_bundle_verifies(bundle: Path, key: Signer) -> None:
    report = verify_bundle(bundle, vkeys=[key.verifier().vkey])
    assert (report.size, report.checkpoints, report.signed_size) == (N, 3, N)
    assert report.root == root_from_leaf_hashes([leaf_hash(b) for b in bodies()])
    assert "24 entries" in str(report)


def flip_body_byte(index: int, offset: int) -> Callable[[Lines], Lines]:
    def change(lines: Lines) -> Lines:
        at = entry_lines(lines) + index
        cut = lines[at].rfind(b',"index":')
        body = bytearray(lines[at][8:cut])
        body[offset] ^= 0x01
        lines[at] = lines[at][:8] + bytes(body) + lines[at][cut:]
        return lines

    return change


@pytest.mark.parametrize("offset", [0, 30, 60, 90, -3])
def test_a_flipped_body_byte_is_reported_at_its_index(bundle: Path, offset: int) -> None:
    assert failure(edit(bundle, flip_body_byte(13, offset))).index == 13


def test_a_deleted_entry_is_reported_at_its_index(bundle: Path) -> None:
    edit(bundle, lambda ls: ls[: entry_lines(ls) + 5] + ls[entry_lines(ls) + 6 :])
    assert failure(bundle).index == 5


def test_reordered_entries_are_reported_at_the_first_moved_index(bundle: Path) -> None:
    def swap(lines: Lines) -> Lines:
        a, b = entry_lines(lines) + 7, entry_lines(lines) + 11
        lines[a], lines[b] = lines[b], lines[a]
        return lines

    assert failure(edit(bundle, swap)).index == 7


def test_a_duplicated_entry_is_reported_at_the_copy(bundle: Path) -> None:
    def duplicate(lines: Lines) -> Lines:
        at = entry_lines(lines) + 3
        return [*lines[: at + 1], lines[at], *lines[at + 1 :]]

    assert failure(edit(bundle, duplicate)).index == 4


def test_a_renumbered_rewrite_fails_against_the_signed_root(bundle: Path) -> None:
    def rewrite(lines: Lines) -> Lines:
        start = entry_lines(lines)
        kept = lines[:start] + lines[start : start + 3] + lines[start + 4 :]
        for position, at in enumerate(range(start, len(kept))):
            record = json.loads(kept[at])
            record["index"] = position
            kept[at] = canon(record)
        return kept

    error = failure(edit(bundle, rewrite))
    assert error.index is None
    assert "signed checkpoint of size 8" in str(error)


def test_a_dropped_tail_is_reported_as_truncation(bundle: Path) -> None:
    edit(bundle, lambda ls: ls[:-2])
    assert "truncated" in str(failure(bundle))


def test_equivocating_checkpoints_are_detected(bundle: Path, key: Signer) -> None:
    other = [encode(make_event(i, allowed=False)) for i in range(N)]
    fork = note_for(key, other, 20)
    edit(bundle, lambda ls: [*ls[:2], canon({"checkpoint": fork}), *ls[2:]])
    assert "equivocation" in str(failure(bundle))


def test_pins_catch_rollback_and_rewrite(bundle: Path, key: Signer, tmp_path: Path) -> None:
    entries = bodies()
    assert verify_bundle(bundle, pin=note_for(key, entries, 13)).checkpoints == 4
    longer = [*entries, encode(make_event(99))]
    assert "rollback" in str(failure(bundle, pin=note_for(key, longer, N + 1)))
    forked = [*entries[:10], *bodies(N)[11:], encode(make_event(77))]
    assert "history rewritten" in str(failure(bundle, pin=note_for(key, forked, 12)))
    stranger = Signer.generate(ORIGIN)
    assert "pinned checkpoint does not verify" in str(
        failure(bundle, pin=note_for(stranger, entries, 13))
    )


def test_untrusted_keys_and_missing_signatures_fail(bundle: Path, key: Signer) -> None:
    assert "checkpoint #0" in str(failure(bundle, vkeys=[Signer.generate("x").verifier().vkey]))
    assert "2 required" in str(failure(bundle, required_signatures=2))
    assert "origin" in str(failure(bundle, origin="another.gov/log"))
    empty = bundle.with_name("empty.jsonl")
    write_bundle(empty, bodies(3), [], [key.verifier().vkey])
    assert "no signed checkpoint" in str(failure(empty))


@pytest.mark.parametrize(
    "change",
    [
        lambda ls: [b"garbage\n", *ls[1:]],
        lambda ls: [b'{"format":"insitu-audit-bundle","v":3}\n', *ls[1:]],
        lambda ls: [b'{"format":"insitu-audit-bundle","v":2} \n', *ls[1:]],
        lambda ls: [*ls, b"not json\n"],
        lambda ls: [*ls, b'{"index": 24, "leaf_hash": "00", "body": ""}\n'],
        lambda ls: [*ls, b'{"index": 24, "leaf_hash": "' + b"0" * 64 + b'", "body": "!!"}\n'],
        lambda ls: [*ls, b'{"vkey": "late"}\n'],
        lambda ls: [*ls, b'{"vkey":"late"}\n'],
        lambda ls: [ls[0], ls[2], ls[1], *ls[3:]],  # checkpoint before vkey
        lambda ls: [ls[0], ls[1].replace(b'":"', b'": "'), *ls[2:]],  # a key line not canonical
        lambda ls: [*ls[:-1], ls[-1][:-1]],  # the last line lacks its newline
        lambda ls: [*ls, b"\n"],
        lambda ls: [ls[0], b'{"vkey":"\\ud800"}\n', *ls[1:]],  # no UTF-8 form: never canonical
        lambda ls: [*ls[:2], b'{"checkpoint":"a\\udc00"}\n', *ls[2:]],
    ],
)
def test_malformed_bundles_fail_closed(bundle: Path, change: Callable[[Lines], Lines]) -> None:
    failure(edit(bundle, change))


def test_unreadable_bundle_fails(tmp_path: Path) -> None:
    failure(tmp_path / "missing.jsonl")
    (tmp_path / "binary.jsonl").write_bytes(b"\xff\xfe\x00")
    failure(tmp_path / "binary.jsonl")


def test_cli_exit_codes(
    bundle: Path, key: Signer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(bundle), "--vkey", key.verifier().vkey]) == 0
    assert capsys.readouterr().out.startswith("OK: 24 entries")
    pin = tmp_path / "pin.txt"
    pin.write_text(note_for(key, bodies(), 10), encoding="utf-8")
    assert main([str(bundle), "--pin", str(pin)]) == 0
    assert "keys taken from the bundle" in capsys.readouterr().out
    edit(bundle, flip_body_byte(3, 40))
    assert main([str(bundle)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAILED at entry 3:") and out.count("\n") == 1
    for argv in (
        [],
        [str(tmp_path / "nope")],
        [str(bundle), "--vkey", "bad"],
        [str(bundle), "--required", "0"],
    ):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
    capsys.readouterr()


def test_cli_reports_an_escaped_surrogate_as_a_failure(
    bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(bundle, lambda ls: [*ls[:2], b'{"checkpoint":"\\ud800"}\n', *ls[2:]])
    assert main([str(bundle)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAILED: a key or checkpoint line") and "canonical" in out


def test_cli_runs_as_a_module(bundle: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-W", "error", "-m", "audit.verify", str(bundle)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.startswith("OK")


# -- properties: every byte counts; any deletion, reordering or duplication fails -------------


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, key: Signer) -> bytes:
    entries = bodies(12)
    notes = [note_for(key, entries, size) for size in (5, 12)]
    path = tmp_path_factory.mktemp("pristine") / "b.jsonl"
    write_bundle(path, entries, notes, [key.verifier().vkey])
    assert verify_bundle(path).size == 12
    return path.read_bytes()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(position=st.integers(min_value=0), mask=st.integers(1, 255))
def test_any_flipped_byte_fails_verification(
    pristine: bytes, tmp_path: Path, position: int, mask: int
) -> None:
    data = bytearray(pristine)
    data[position % len(data)] ^= mask
    path = tmp_path / "flipped.jsonl"
    path.write_bytes(bytes(data))
    with pytest.raises(VerificationError):
        verify_bundle(path)


def _entries_of(pristine: bytes) -> tuple[list[bytes], list[bytes]]:
    lines = pristine.splitlines(keepends=True)
    start = entry_lines(lines)
    return lines[:start], lines[start:]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_deleted_reordered_or_duplicated_entry_fails(
    pristine: bytes, tmp_path: Path, data: st.DataObject
) -> None:
    head, entries = _entries_of(pristine)
    i = data.draw(st.integers(0, len(entries) - 1), label="entry")
    op = data.draw(st.sampled_from(["delete", "duplicate", "swap", "move"]), label="op")
    changed = list(entries)
    if op == "delete":
        del changed[i]
    elif op == "duplicate":
        changed.insert(data.draw(st.integers(0, len(changed)), label="at"), entries[i])
    else:
        j = data.draw(st.integers(0, len(entries) - 1).filter(lambda j: j != i), label="other")
        if op == "swap":
            changed[i], changed[j] = changed[j], changed[i]
        else:
            changed.insert(j, changed.pop(i))
    path = tmp_path / "edited.jsonl"
    path.write_bytes(b"".join(head + changed))
    with pytest.raises(VerificationError):
        verify_bundle(path)


def test_a_version_1_bundle_is_refused_with_a_clear_message(bundle: Path) -> None:
    edit(bundle, lambda ls: [b'{"format":"insitu-audit-bundle","v":1}\n', *ls[1:]])
    message = str(failure(bundle))
    assert "v1" in message and "reads v2 only" in message and "export the bundle again" in message


def test_lines_are_canonical_json_with_the_body_embedded(bundle: Path) -> None:
    lines = bundle.read_bytes().splitlines(keepends=True)
    assert lines[0] == b'{"format":"insitu-audit-bundle","v":2}\n'
    for line in lines:
        assert canon(json.loads(line)) == line
    first = json.loads(lines[entry_lines(lines)])
    assert encode(make_event(0)) == canon(first["body"]).rstrip(b"\n")
    assert (first["index"], first["leaf_hash"]) == (0, leaf_hash(encode(make_event(0))).hex())


def test_reader_streams_entries_and_reports_a_malformed_one(bundle: Path) -> None:
    with BundleReader(bundle) as reader:
        assert len(reader.checkpoints) == 3 and len(reader.vkeys) == 1
        entries = list(reader.entries())
    assert [e.index for e in entries] == list(range(N))
    assert [e.body for e in entries] == bodies()
    edit(bundle, lambda ls: [*ls[:-1], ls[-1].replace(b'"index":', b'"index": ')])
    with BundleReader(bundle) as reader, pytest.raises(VerificationError) as caught:
        list(reader.entries())
    assert caught.value.index == N - 1 and "canonical" in str(caught.value)
    for bad, message in [
        ('{"body":{} ,"index":0,"leaf_hash":"' + "0" * 64 + '"}\n', "canonical"),
        ('{"body":"x","index":0,"leaf_hash":"' + "0" * 64 + '"}', "does not end"),
        ('{"body":{},"index":1,"leaf_hash":"' + "0" * 63 + 'g"}\n', "leaf hash"),
        ('{"body":{},"index":-1,"leaf_hash":"' + "0" * 64 + '"}\n', "index"),
        ('{"body":{},"index":1}\n', "malformed"),
        ("[]\n", "malformed"),
        ("\ud800\n", "UTF-8"),
        ('{"body":"\\ud800","index":0,"leaf_hash":"' + "0" * 64 + '"}\n', "canonical"),
    ]:
        with pytest.raises(VerificationError, match=message) as caught:
            read_entry(bad, 7)
        assert caught.value.index == 7


def test_a_damaged_body_in_the_log_fails_at_its_index(tmp_path: Path, key: Signer) -> None:
    entries = bodies(6)
    damaged = [
        BundleEntry(i, b'{"x":\n"\xff"}' if i == 4 else body, leaf_hash(body))
        for i, body in enumerate(entries)
    ]
    path = tmp_path / "damaged.jsonl"
    assert write_bundle(path, damaged, [note_for(key, entries, 6)], [key.verifier().vkey]) == 6
    assert failure(path).index == 4  # its newline splits it: entry line 4 is cut short


@pytest.mark.parametrize(
    ("tail", "ok"),
    [
        (b',"index":7,"leaf_hash":"' + b"ab" * 32 + b'"}', True),
        (b',"index":0,"leaf_hash":"' + b"0" * 64 + b'"}', True),
        (b',"index":999999999999999999,"leaf_hash":"' + b"0" * 64 + b'"}', True),
        (b',"index":1000000000000000000,"leaf_hash":"' + b"0" * 64 + b'"}', False),
        (b',"index":07,"leaf_hash":"' + b"ab" * 32 + b'"}', False),
        (b',"index":-7,"leaf_hash":"' + b"ab" * 32 + b'"}', False),
        (b',"index":,"leaf_hash":"' + b"ab" * 32 + b'"}', False),
        (b',"index":\xd9\xa2,"leaf_hash":"' + b"ab" * 32 + b'"}', False),
        (b',"index":7,"leaf_hash":"' + b"AB" * 32 + b'"}', False),
        (b',"index":7,"leaf_hash":"' + b"0" * 63 + b'A"}', False),
        (b',"index":7,"leaf_hash":"' + b"ag" * 32 + b'"}', False),
        (b',"index":7,"leaf_hash":"' + b"ab" * 31 + b'"}', False),
        (b',"index":7,"leaf_hash":"' + b"ab" * 33 + b'"}', False),
        (b',"index":7,"leaf_hash": "' + b"ab" * 32 + b'"}', False),
        (b',"index":7,"leaf_hash":"' + b"ab" * 32 + b'"} ', False),
        (b',"index":7 ,"leaf_hash":"' + b"ab" * 32 + b'"}', False),
        (b',"index":7,"leaf_hash":"' + b"ab" * 32 + b'","x":1}', False),
    ],
)
def test_entry_lines_are_parsed_exactly(tail: bytes, ok: bool) -> None:
    body = b'{"a":",\\"index\\":1"}'
    line = b'{"body":' + body + tail
    if ok:
        index, parsed, stored = parse_entry_line(line, 3)
        assert parsed == body and index == int(tail.split(b":")[1].split(b",")[0])
        assert stored.hex().encode() == tail[-66:-2]
    else:
        with pytest.raises(VerificationError) as caught:
            parse_entry_line(line, 3)
        assert caught.value.index == 3
    with pytest.raises(VerificationError):
        parse_entry_line(b'{"body" :' + body + tail, 3)
