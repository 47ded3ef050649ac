"""The offline verifier compares the tree it recomputes with every signed root: a history
rewritten with well-formed, correctly hashed entries under the genuine signed checkpoints (or a
saved pin) is refused, at the first checkpoint that no longer matches."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit import (
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
from audit.verify import CheckpointSet
from tests.unit.audit._support import ORIGIN, make_event

SIZE = 12


@pytest.fixture(scope="module")
def key() -> Signer:
    return Signer.generate(ORIGIN)


@pytest.fixture(scope="module")
def bodies() -> list[bytes]:
    return [encode(make_event(i)) for i in range(SIZE)]


def note(key: Signer, bodies: list[bytes], size: int) -> str:
    root = root_from_leaf_hashes([leaf_hash(b) for b in bodies[:size]])
    return sign_checkpoint(Checkpoint(ORIGIN, size, root), [key])


def rewritten(bodies: list[bytes], at: int) -> list[bytes]:
    """The same log with entry `at` replaced by another well-formed event (a denial)."""
    forged = encode(make_event(at, allowed=False, reason="rewritten"))
    assert forged != bodies[at]
    return [*bodies[:at], forged, *bodies[at + 1 :]]


def test_the_genuine_bundle_verifies(tmp_path: Path, key: Signer, bodies: list[bytes]) -> None:
    path = tmp_path / "b.jsonl"
    write_bundle(path, bodies, [note(key, bodies, 5), note(key, bodies, SIZE)], [])
    report = verify_bundle(path, vkeys=[key.verifier().vkey])
    assert (report.size, report.signed_size, report.checkpoints) == (SIZE, SIZE, 2)


@pytest.mark.parametrize(("at", "first_bad"), [(0, 5), (4, 5), (5, SIZE), (SIZE - 1, SIZE)])
def test_a_rewritten_entry_fails_the_first_signed_root_after_it(
    tmp_path: Path, key: Signer, bodies: list[bytes], at: int, first_bad: int
) -> None:
    path = tmp_path / "b.jsonl"
    notes = [note(key, bodies, 5), note(key, bodies, SIZE)]  # signed over the true history
    write_bundle(path, rewritten(bodies, at), notes, [])
    with pytest.raises(
        VerificationError, match=f"do not match the signed checkpoint of size {first_bad}"
    ):
        verify_bundle(path, vkeys=[key.verifier().vkey])


def test_a_pin_catches_a_history_rewritten_and_re_signed(
    tmp_path: Path, key: Signer, bodies: list[bytes]
) -> None:
    """The log key re-signed the rewritten history: only the pin saved earlier disagrees."""
    pin = note(key, bodies, 8)
    forged = rewritten(bodies, 3)
    path = tmp_path / "b.jsonl"
    write_bundle(path, forged, [note(key, forged, SIZE)], [])
    assert verify_bundle(path, vkeys=[key.verifier().vkey]).size == SIZE  # consistent alone
    with pytest.raises(VerificationError, match="history rewritten"):
        verify_bundle(path, pin=pin, vkeys=[key.verifier().vkey])


def test_checkpoint_set_compares_each_signed_root(key: Signer, bodies: list[bytes]) -> None:
    roots = {n: root_from_leaf_hashes([leaf_hash(b) for b in bodies[:n]]) for n in (0, 3, 7)}
    signed = CheckpointSet([Checkpoint(ORIGIN, 3, roots[3]), Checkpoint(ORIGIN, 7, roots[7])])
    signed.check(3, roots[3])
    signed.check(7, roots[7])
    signed.check(5, roots[3])  # no checkpoint of size 5: nothing to compare
    with pytest.raises(VerificationError, match="size 7"):
        signed.check(7, roots[3])
    with pytest.raises(VerificationError, match="size 3"):
        signed.check(3, roots[0])
