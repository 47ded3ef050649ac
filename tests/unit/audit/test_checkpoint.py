"""C2SP signed notes and checkpoints: the Go reference vector, round trips, refusals."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import (
    AuditError,
    Checkpoint,
    CheckpointError,
    NoteVerifier,
    Signer,
    open_checkpoint,
    open_note,
    sign_checkpoint,
    sign_note,
)
from audit.merkle import EMPTY_ROOT

# golang.org/x/mod/sumdb/note: the PeterNeumann example.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FF"
    "YC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ORIGIN = "example.gov/insitu"
ROOT = bytes(range(32))


def go_signer() -> Signer:
    seed = base64.b64decode(GO_SKEY.split("+", 4)[4])[1:]
    return Signer("PeterNeumann", Ed25519PrivateKey.from_private_bytes(seed))


def test_signing_reproduces_the_go_reference_note() -> None:
    signer = go_signer()
    assert signer.verifier().vkey == GO_VKEY
    assert sign_note(GO_TEXT, [signer]) == GO_NOTE


def test_go_reference_note_opens_with_its_vkey() -> None:
    verifier = NoteVerifier.from_vkey(GO_VKEY)
    assert open_note(GO_NOTE, [verifier]) == GO_TEXT
    with pytest.raises(CheckpointError):
        open_note(GO_NOTE.replace("cryptography", "cryptographY"), [verifier])


def test_checkpoint_round_trip(signer: Signer) -> None:
    checkpoint = Checkpoint(ORIGIN, 42, ROOT)
    note = sign_checkpoint(checkpoint, [signer])
    body = f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}\n"
    assert note.startswith(body + "\n— " + signer.name + " ")
    assert open_checkpoint(note, [signer.verifier()], ORIGIN) == checkpoint


def test_tampered_body_fails(signer: Signer) -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 42, ROOT), [signer])
    with pytest.raises(CheckpointError):
        open_checkpoint(note.replace("\n42\n", "\n43\n"), [signer.verifier()], ORIGIN)


def test_wrong_origin_fails(signer: Signer) -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 1, ROOT), [signer])
    with pytest.raises(CheckpointError, match="origin"):
        open_checkpoint(note, [signer.verifier()], "other.gov/log")


def test_unknown_keys_are_ignored_but_one_known_is_required(signer: Signer) -> None:
    witness = Signer.generate("witness.example")
    note = sign_checkpoint(Checkpoint(ORIGIN, 1, ROOT), [witness, signer])
    assert open_checkpoint(note, [signer.verifier()], ORIGIN).size == 1
    with pytest.raises(CheckpointError, match="0 valid"):
        open_checkpoint(note, [Signer.generate("stranger").verifier()], ORIGIN)


def test_cosignatures_k_of_n(signer: Signer) -> None:
    a, b, c = (Signer.generate(name) for name in ("a.example", "b.example", "c.example"))
    note = sign_checkpoint(Checkpoint(ORIGIN, 7, ROOT), [signer, a, b])
    known = [signer.verifier(), a.verifier(), b.verifier(), c.verifier()]
    assert open_checkpoint(note, known, ORIGIN, required=3).size == 7
    with pytest.raises(CheckpointError, match="4 required"):
        open_checkpoint(note, known, ORIGIN, required=4)
    doubled = note + note.split("\n\n", 1)[1]  # the same signatures twice count once
    with pytest.raises(CheckpointError):
        open_checkpoint(doubled, known, ORIGIN, required=4)


def test_bad_signature_by_a_known_key_fails_even_with_another_good_one(signer: Signer) -> None:
    other = Signer.generate("other.example")
    good = sign_checkpoint(Checkpoint(ORIGIN, 1, ROOT), [signer, other])
    lines = good.split("\n")
    raw = bytearray(base64.b64decode(lines[-2].split(" ")[2]))
    raw[-1] ^= 1
    lines[-2] = " ".join([*lines[-2].split(" ")[:2], base64.b64encode(raw).decode()])
    with pytest.raises(CheckpointError, match="does not verify"):
        open_checkpoint("\n".join(lines), [signer.verifier(), other.verifier()], ORIGIN)


def test_same_name_different_key_is_not_the_known_key(signer: Signer) -> None:
    impostor = Signer.generate(signer.name)
    note = sign_checkpoint(Checkpoint(ORIGIN, 1, ROOT), [impostor])
    with pytest.raises(CheckpointError):
        open_checkpoint(note, [signer.verifier()], ORIGIN)


def test_pem_round_trip_with_and_without_password(signer: Signer) -> None:
    assert Signer.from_pem(signer.to_pem(), signer.name).verifier() == signer.verifier()
    locked = signer.to_pem(password=b"s3cret")
    assert Signer.from_pem(locked, signer.name, b"s3cret").verifier() == signer.verifier()
    for pem, password in [(locked, b"wrong"), (b"not a key", None), (locked, None)]:
        with pytest.raises(CheckpointError):
            Signer.from_pem(pem, signer.name, password)
    assert "private_key" not in repr(signer)


@pytest.mark.parametrize(
    "vkey",
    [
        "",
        "name",
        "name+c74f20a3",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # hash
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # case
        "PeterNeumann+c74f20a3+Apc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # length
        "PeterNeumann+c74f20a3+AhpcqQcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # algorithm
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
)
def test_malformed_vkeys_are_refused(vkey: str) -> None:
    with pytest.raises(CheckpointError):
        NoteVerifier.from_vkey(vkey)


def valid_note(signer: Signer) -> str:
    return sign_checkpoint(Checkpoint(ORIGIN, 3, EMPTY_ROOT), [signer])


@pytest.mark.parametrize(
    "mangle",
    [
        lambda n: n.rstrip("\n"),  # no final newline
        lambda n: n.replace("\n\n", "\n"),  # no blank line
        lambda n: n.replace("— ", "-- "),
        lambda n: n.replace("— ", "—  "),
        lambda n: n.replace("\n3\n", "\n03\n"),
        lambda n: n.replace("\n3\n", "\n-3\n"),
        lambda n: n.replace("\n3\n", "\n3\nextension line\n"),
        lambda n: n.replace(f"{ORIGIN}\n", ""),
        lambda n: n.replace("=\n\n", "\n\n"),  # root not canonical base64
        lambda n: n + "— trailing\n",
        lambda n: n + "\n",
        lambda n: n.replace("\n3\n", "\n3\x07\n"),
        lambda n: n + "".join(f"— w{i} AAAAAAAA\n" for i in range(101)),
    ],
)
def test_malformed_notes_are_refused(signer: Signer, mangle: object) -> None:
    note = mangle(valid_note(signer))  # type: ignore[operator]
    with pytest.raises(CheckpointError):
        open_checkpoint(note, [signer.verifier()], ORIGIN)


@pytest.mark.parametrize(
    ("origin", "size", "root"),
    [
        ("", 1, ROOT),
        ("a\nb", 1, ROOT),
        (ORIGIN, -1, ROOT),
        (ORIGIN, 1, b"short"),
        (ORIGIN, 2**63, ROOT),
    ],
)
def test_invalid_checkpoints_are_refused(origin: str, size: int, root: bytes) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint(origin, size, root)


@settings(max_examples=300, deadline=None)
@given(note=st.text(max_size=400), cut=st.integers(0, 400))
def test_hostile_notes_raise_only_checkpoint_error(signer: Signer, note: str, cut: int) -> None:
    for candidate in (note, valid_note(signer)[:cut] + note):
        try:
            open_checkpoint(candidate, [signer.verifier()], ORIGIN)
        except AuditError as exc:
            assert isinstance(exc, CheckpointError)
