"""Witnesses cosign only consistent extensions; receipts verify alone; k cosignatures."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from audit import (
    Checkpoint,
    Signer,
    VerificationError,
    Witness,
    WitnessRefusal,
    consistency_proof,
    encode,
    inclusion_proof,
    leaf_hash,
    sign_checkpoint,
    verify_bundle,
    verify_receipt,
    write_bundle,
)
from audit.tree import CompactRange
from tests.unit.audit._support import ORIGIN, make_event


class Log:
    """An in-memory log with stored perfect subtrees, signed by `key`."""

    def __init__(self, key: Signer, bodies: list[bytes]) -> None:
        self.key = key
        self.bodies = bodies
        self.nodes: dict[tuple[int, int], bytes] = {}
        tree = CompactRange()
        self.roots = [tree.root()]
        for body in bodies:
            self.nodes.update(dict(tree.append(leaf_hash(body))))
            self.roots.append(tree.root())

    def get(self, level: int, index: int) -> bytes:
        return self.nodes[(level, index)]

    def note(self, size: int) -> str:
        return sign_checkpoint(Checkpoint(ORIGIN, size, self.roots[size]), [self.key])

    def proof(self, first: int, second: int) -> list[bytes]:
        return consistency_proof(first, second, self.get)

    def receipt(self, index: int, size: int) -> dict[str, Any]:
        return {
            "audit_index": index,
            "tree_size": size,
            "leaf_hash": leaf_hash(self.bodies[index]).hex(),
            "inclusion_proof": [p.hex() for p in inclusion_proof(index, size, self.get)],
            "checkpoint": self.note(size),
            "entry": base64.b64encode(self.bodies[index]).decode(),
        }


@pytest.fixture(scope="module")
def key() -> Signer:
    return Signer.generate(ORIGIN)


@pytest.fixture(scope="module")
def log(key: Signer) -> Log:
    return Log(key, [encode(make_event(i)) for i in range(40)])


@pytest.fixture
def witness(tmp_path: Path, key: Signer) -> Witness:
    return Witness(Signer.generate("witness-a"), [key.verifier()], ORIGIN, tmp_path / "w.json")


def test_witness_cosigns_consistent_extensions_and_remembers(witness: Witness, log: Log) -> None:
    first = witness.cosign(log.note(10))
    assert witness.last() == Checkpoint(ORIGIN, 10, log.roots[10])
    second = witness.cosign(log.note(25), log.proof(10, 25))
    assert second.startswith(log.note(25)) and second.count("\u2014 ") == 2
    assert first != second
    again = Witness(witness.signer, witness.log_keys, ORIGIN, witness.path)  # restarted
    assert again.last() == Checkpoint(ORIGIN, 25, log.roots[25])
    again.cosign(log.note(25))  # the same checkpoint again is fine


def test_witness_refuses_a_rollback(witness: Witness, log: Log) -> None:
    witness.cosign(log.note(20))
    with pytest.raises(WitnessRefusal) as refused:
        witness.cosign(log.note(12))
    assert refused.value.kind == "rollback"
    assert witness.last() == Checkpoint(ORIGIN, 20, log.roots[20])


def test_witness_refuses_a_fork(witness: Witness, log: Log, key: Signer) -> None:
    witness.cosign(log.note(20))
    forked = Log(
        key, [*log.bodies[:15], *(encode(make_event(i, allowed=False)) for i in range(25))]
    )
    with pytest.raises(WitnessRefusal) as same_size:
        witness.cosign(forked.note(20))
    assert same_size.value.kind == "fork"
    with pytest.raises(WitnessRefusal) as rewritten:
        witness.cosign(forked.note(30), forked.proof(20, 30))
    assert rewritten.value.kind == "fork"
    with pytest.raises(WitnessRefusal):  # a correct log without its proof is refused too
        witness.cosign(log.note(30), [])
    assert witness.last() == Checkpoint(ORIGIN, 20, log.roots[20])


def test_witness_refuses_notes_not_signed_by_the_log(witness: Witness, log: Log) -> None:
    stranger = Log(Signer.generate(ORIGIN), log.bodies)
    with pytest.raises(WitnessRefusal) as refused:
        witness.cosign(stranger.note(10))
    assert refused.value.kind == "invalid"
    assert witness.last() is None


def test_verifier_requires_k_cosignatures(tmp_path: Path, log: Log, key: Signer) -> None:
    witnesses = [
        Witness(Signer.generate(f"w{i}"), [key.verifier()], ORIGIN, tmp_path / f"w{i}.json")
        for i in range(3)
    ]
    note = log.note(30)
    for w in witnesses[:2]:
        note = w.cosign(note)
    path = tmp_path / "b.jsonl"
    write_bundle(path, log.bodies[:30], [log.note(10), note], [key.verifier().vkey])
    vkeys = [w.vkey for w in witnesses]
    assert verify_bundle(path, witnesses=vkeys, cosignatures=2).witnessed_size == 30
    with pytest.raises(VerificationError, match="2 cosignature"):
        verify_bundle(path, witnesses=vkeys[2:] + vkeys[:1], cosignatures=2)
    with pytest.raises(VerificationError, match="3 cosignature"):
        verify_bundle(path, witnesses=vkeys, cosignatures=3)
    forged = note.replace(note.splitlines()[-1][-8:], "AAAAAAA=")
    write_bundle(path, log.bodies[:30], [forged], [key.verifier().vkey])
    with pytest.raises(VerificationError):
        verify_bundle(path, witnesses=vkeys, cosignatures=1)


def test_a_receipt_verifies_alone(log: Log, key: Signer) -> None:
    for index, size in [(0, 1), (7, 8), (12, 40), (39, 40)]:
        checked = verify_receipt(log.receipt(index, size), [key.verifier()])
        assert checked.index == index and checked.checkpoint.size == size
        assert encode(checked.event) == log.bodies[index]


def test_a_receipt_under_another_key_or_for_another_entry_fails(log: Log, key: Signer) -> None:
    receipt = log.receipt(5, 20)
    with pytest.raises(VerificationError):
        verify_receipt(receipt, [Signer.generate(ORIGIN).verifier()])
    swapped = {**receipt, "entry": base64.b64encode(log.bodies[6]).decode()}
    with pytest.raises(VerificationError):
        verify_receipt(swapped, [key.verifier()])
    moved = {**receipt, "audit_index": 6}
    with pytest.raises(VerificationError):
        verify_receipt(moved, [key.verifier()])


hostile = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 2**70) | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


FIELDS = ["audit_index", "tree_size", "leaf_hash", "inclusion_proof", "checkpoint", "entry"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(FIELDS), value=hostile)
def test_a_receipt_with_any_field_replaced_is_refused(field: str, value: Any) -> None:
    """Only VerificationError, and always: a verifier accepting the forgery fails the test."""
    key = Signer.generate(ORIGIN)
    log = Log(key, [encode(make_event(i)) for i in range(9)])
    receipt = log.receipt(3, 9)
    assume(value != receipt[field])  # an unchanged field is no forgery
    receipt[field] = value
    json.dumps(receipt, default=str)  # the case is a real document
    with pytest.raises(VerificationError):
        verify_receipt(receipt, [key.verifier()])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=hostile)
def test_a_hostile_document_in_place_of_a_receipt_is_refused(value: Any) -> None:
    key = Signer.generate(ORIGIN)
    with pytest.raises(VerificationError):
        verify_receipt(value, [key.verifier()])


def test_fields_beyond_the_receipts_are_ignored(log: Log, key: Signer) -> None:
    receipt = {**log.receipt(3, 9), "extra": {"anything": [1, None]}}
    assert verify_receipt(receipt, [key.verifier()]).index == 3
