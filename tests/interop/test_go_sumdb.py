"""insitu's checkpoints, cosignature/v1 witness signatures, leaf hashes and proofs against Go's
golang.org/x/mod/sumdb/note and sumdb/tlog (an independent implementation), both ways.

The fast tests check the kept Go answer (fixtures/go_sumdb.json) without Go: that insitu still
produces exactly the input Go checked, and that Go accepted it. The slow test runs Go now (it
skips without Go outside CI; `.ci/run` installs golang-go and golang-golang-x-mod-dev).
Regenerate the fixture with INSITU_REGENERATE_FIXTURES=1 and Go installed.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from audit import (
    CosignatureVerifier,
    NoteVerifier,
    leaf_hash,
    open_checkpoint,
    verify_consistency,
    verify_inclusion,
    witness_key,
)
from audit.checkpoint import count_signatures, split_note
from tests.interop._tools import REGENERATE, go_program, load_fixture, run_json, save_fixture
from tests.interop.sumdb_case import FIXTURE, GO_WITNESS_KEY, ORIGIN, build_case

GO_SOURCE = Path(__file__).parent / "go" / "sumdbcheck"


@pytest.fixture(scope="module")
def case() -> dict[str, Any]:
    return build_case()


def _raw(b64: list[str]) -> list[bytes]:
    return [base64.b64decode(h) for h in b64]


def test_insitu_still_produces_the_input_go_checked(case: dict[str, Any]) -> None:
    if REGENERATE:
        pytest.skip("regenerating the fixture")
    assert case == load_fixture(FIXTURE)["input"]


def test_go_opened_every_note_with_the_signatures_insitu_counts(case: dict[str, Any]) -> None:
    go = load_fixture(FIXTURE)["go"]
    log = NoteVerifier.from_vkey(case["log_vkey"])
    cosigner = witness_key(case["witness_vkeys"][0])
    legacy = witness_key(case["legacy_witness_vkeys"][0])
    assert isinstance(cosigner, CosignatureVerifier) and isinstance(legacy, NoteVerifier)
    for note, seen in zip(case["notes"], go["notes"], strict=True):
        assert seen["error"] == ""
        assert seen["text"] == split_note(note)[0]
        assert seen["log_sigs"] == count_signatures(note, [log]) == 1
        assert seen["witness_sigs"] == count_signatures(note, [cosigner])
        assert seen["legacy_sigs"] == count_signatures(note, [legacy])
    # Four stored checkpoints carry one cosignature/v1 each; the legacy copy carries both kinds;
    # the checkpoint with an extension line is opened by Go and by insitu alike.
    assert [n["witness_sigs"] for n in go["notes"]] == [1, 1, 1, 1, 1, 0]
    assert [n["legacy_sigs"] for n in go["notes"]] == [0, 0, 0, 0, 1, 0]
    extended = open_checkpoint(case["notes"][-1], [log], ORIGIN)
    assert extended.extensions == ("insitu.interop/ext 1",)


def test_go_computed_the_same_leaf_hashes_roots_and_proofs(case: dict[str, Any]) -> None:
    go = load_fixture(FIXTURE)["go"]
    log = NoteVerifier.from_vkey(case["log_vkey"])
    assert go["leaf_hashes"] == [
        base64.b64encode(leaf_hash(base64.b64decode(b))).decode() for b in case["leaves"]
    ]
    for note in case["notes"][:4]:
        cp = open_checkpoint(note, [log], ORIGIN)
        assert base64.b64decode(go["roots"][str(cp.size)]) == cp.root
    roots = {int(k): base64.b64decode(v) for k, v in go["roots"].items()}
    for ours, theirs in zip(case["inclusion"], go["inclusion"], strict=True):
        assert theirs == {"ok": True, "error": "", "go_proof": ours["proof"]}
        leaf = leaf_hash(base64.b64decode(case["leaves"][ours["index"]]))
        verify_inclusion(
            leaf, ours["index"], ours["size"], _raw(ours["proof"]), roots[ours["size"]]
        )
    for ours, theirs in zip(case["consistency"], go["consistency"], strict=True):
        assert theirs == {"ok": True, "error": "", "go_proof": ours["proof"]}
        m, n = ours["first"], ours["size"]
        verify_consistency(m, n, _raw(ours["proof"]), roots[m], roots[n])


def test_insitu_verifies_a_note_signed_and_cosigned_by_go(case: dict[str, Any]) -> None:
    go_note = load_fixture(FIXTURE)["go"]["go_note"]
    log = NoteVerifier.from_vkey(case["log_vkey"])
    cp = open_checkpoint(go_note, [log], ORIGIN)
    assert cp.size == case["go_size"]
    go_witness = CosignatureVerifier(GO_WITNESS_KEY.name, GO_WITNESS_KEY.verifier().public_key)
    assert count_signatures(go_note, [go_witness]) == 1
    assert go_note.startswith(case["notes"][2].split("\n\n")[0] + "\n\n")  # same body as ours
    raw = base64.b64decode(go_note.rstrip("\n").rsplit(" ", 1)[1])
    assert CosignatureVerifier.timestamp(raw[4:]) == case["go_time"]


@pytest.mark.slow
def test_go_agrees_now(case: dict[str, Any], tmp_path: Path) -> None:
    program = go_program(GO_SOURCE, tmp_path / "sumdbcheck")
    answer = run_json([str(program)], case)
    if REGENERATE:
        save_fixture(FIXTURE, {"input": case, "go": answer})
    assert {"input": case, "go": answer} == load_fixture(FIXTURE)
