"""C2SP cosignature/v1: exact signed bytes, key type 0x04, legacy 0x01 witness signatures still
read, extension lines, and the tlog-witness add-checkpoint rules over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import struct
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit import (
    EMPTY_ROOT,
    Checkpoint,
    CheckpointError,
    CosignatureVerifier,
    NoteVerifier,
    Signer,
    Witness,
    WitnessRefusal,
    WitnessServer,
    consistency_proof,
    cosign,
    encode,
    format_add_checkpoint,
    leaf_hash,
    open_checkpoint,
    parse_add_checkpoint,
    parse_cosignatures,
    sign_checkpoint,
    sign_note,
    witness_key,
)
from audit.checkpoint import count_signatures, split_note
from audit.tree import CompactRange
from tests.unit.audit._support import ORIGIN, make_event

T = 1679315147


class Log:
    def __init__(self, key: Signer, n: int) -> None:
        self.key = key
        self.nodes: dict[tuple[int, int], bytes] = {}
        tree = CompactRange()
        self.roots = [tree.root()]
        for i in range(n):
            self.nodes.update(dict(tree.append(leaf_hash(encode(make_event(i))))))
            self.roots.append(tree.root())

    def note(self, size: int) -> str:
        return sign_checkpoint(Checkpoint(ORIGIN, size, self.roots[size]), [self.key])

    def proof(self, first: int, second: int) -> list[bytes]:
        return consistency_proof(first, second, lambda lv, i: self.nodes[(lv, i)])


@pytest.fixture(scope="module")
def log() -> Log:
    return Log(Signer.generate(ORIGIN), 30)


@pytest.fixture
def witness(tmp_path: Path, log: Log) -> Witness:
    return Witness(
        Signer.generate("witness.test/w1"),
        [log.key.verifier()],
        ORIGIN,
        tmp_path / "state.json",
        clock=lambda: T,
    )


def test_cosignature_signs_the_c2sp_message_with_a_type_4_key_hash(log: Log) -> None:
    signer = Signer.generate("witness.test/w1")
    text = log.note(7).split("\n\n")[0] + "\n"
    line = cosign(signer, text, T)
    name, b64 = line.removeprefix("\u2014 ").rstrip("\n").split(" ")
    raw = base64.b64decode(b64)
    public = signer.verifier().public_key
    assert name == "witness.test/w1" and len(raw) == 4 + 8 + 64
    assert raw[:4] == hashlib.sha256(b"witness.test/w1\n\x04" + public).digest()[:4]
    assert struct.unpack(">Q", raw[4:12])[0] == T
    message = f"cosignature/v1\ntime {T}\n".encode() + text.encode()
    Ed25519PublicKey.from_public_bytes(public).verify(raw[12:], message)  # raises if not
    vkey = CosignatureVerifier(signer.name, public).vkey
    assert base64.b64decode(vkey.split("+", 2)[2])[0] == 0x04
    assert witness_key(vkey) == CosignatureVerifier(signer.name, public)


def test_a_changed_timestamp_or_body_fails_and_kinds_never_mix(log: Log) -> None:
    signer = Signer.generate("w")
    note = log.note(9)
    text, _ = split_note(note)
    cosigned = note + cosign(signer, text, T)
    v1 = CosignatureVerifier(signer.name, signer.verifier().public_key)
    assert count_signatures(cosigned, [v1]) == 1
    assert count_signatures(cosigned, [signer.verifier()]) == 0  # a type 0x01 key: not it
    raw = bytearray(base64.b64decode(cosigned.rsplit(" ", 1)[1]))
    raw[11] ^= 1  # the timestamp's last byte
    bent = cosigned.rsplit(" ", 1)[0] + " " + base64.b64encode(bytes(raw)).decode() + "\n"
    with pytest.raises(CheckpointError, match="does not verify"):
        count_signatures(bent, [v1])


def test_legacy_plain_witness_signatures_still_count_with_their_0x01_vkey(log: Log) -> None:
    old_witness = Signer.generate("w-old")
    note = log.note(12)
    text, _ = split_note(note)
    legacy = note + sign_note(text, [old_witness]).split("\n\n")[-1]
    key = witness_key(old_witness.verifier().vkey)
    assert isinstance(key, NoteVerifier)
    assert count_signatures(legacy, [key]) == 1
    v1 = CosignatureVerifier(old_witness.name, old_witness.verifier().public_key)
    assert count_signatures(legacy, [v1]) == 0


def test_checkpoints_with_extension_lines_open_and_are_cosigned_whole(log: Log) -> None:
    cp = Checkpoint(ORIGIN, 5, log.roots[5], ("ext one", "x=2"))
    note = sign_checkpoint(cp, [log.key])
    assert note.startswith(f"{ORIGIN}\n5\n{base64.b64encode(log.roots[5]).decode()}\next one\n")
    assert open_checkpoint(note, [log.key.verifier()], ORIGIN) == cp
    text, _ = split_note(note)
    signer = Signer.generate("w")
    v1 = CosignatureVerifier(signer.name, signer.verifier().public_key)
    assert count_signatures(note + cosign(signer, text, T), [v1]) == 1
    for bad in [("",), ("a\nb",), ("bell\x07",)]:
        with pytest.raises(CheckpointError):
            Checkpoint(ORIGIN, 5, log.roots[5], bad)


def test_add_checkpoint_cosigns_extensions_and_refuses_per_the_spec(
    witness: Witness, log: Log
) -> None:
    line = witness.add_checkpoint(0, [], log.note(10))
    v1 = witness_key(witness.vkey)
    assert count_signatures(log.note(10) + line, [v1]) == 1
    witness.add_checkpoint(10, log.proof(10, 20), log.note(20))
    assert witness.last() == Checkpoint(ORIGIN, 20, log.roots[20])

    def refused(old: int, proof: list[bytes], note: str) -> WitnessRefusal:
        with pytest.raises(WitnessRefusal) as caught:
            witness.add_checkpoint(old, proof, note)
        return caught.value

    assert refused(10, log.proof(10, 25), log.note(25)).kind == "conflict"
    assert refused(10, log.proof(10, 25), log.note(25)).size == 20
    assert refused(0, [], log.note(25)).kind == "conflict"  # a rollback to "never seen"
    assert refused(26, [], log.note(25)).kind == "bad-request"
    assert refused(20, log.proof(10, 25), log.note(25)).kind == "unprocessable"  # bad proof
    other = Log(Signer.generate(ORIGIN), 5)
    assert refused(20, [], other.note(5)).kind == "unauthorized"
    forked = sign_checkpoint(Checkpoint(ORIGIN, 20, log.roots[19]), [log.key])
    assert refused(20, [], forked).kind == "unprocessable"
    stranger = sign_checkpoint(Checkpoint("other.test/log", 3, log.roots[3]), [log.key])
    assert refused(20, [], stranger).kind == "unknown-origin"
    empty_bad = sign_checkpoint(Checkpoint(ORIGIN, 0, log.roots[3]), [log.key])
    assert refused(0, [], empty_bad).kind == "unprocessable"
    assert witness.last() == Checkpoint(ORIGIN, 20, log.roots[20])


def test_add_checkpoint_from_zero_refuses_a_proof(tmp_path: Path, log: Log) -> None:
    witness = Witness(Signer.generate("w"), [log.key.verifier()], ORIGIN, tmp_path / "s")
    with pytest.raises(WitnessRefusal) as caught:
        witness.add_checkpoint(0, log.proof(3, 10), log.note(10))
    assert caught.value.kind == "unprocessable"
    witness.add_checkpoint(0, [], sign_checkpoint(Checkpoint(ORIGIN, 0, EMPTY_ROOT), [log.key]))


def test_request_bodies_round_trip_and_malformed_ones_are_bad_requests(log: Log) -> None:
    body = format_add_checkpoint(10, log.proof(10, 20), log.note(20))
    assert body.startswith(b"old 10\n") and b"\n\n" + log.note(20).encode() in body
    parsed = parse_add_checkpoint(body)
    assert (parsed.old_size, list(parsed.proof), parsed.note) == (
        10,
        log.proof(10, 20),
        log.note(20),
    )
    for bad in [
        b"old 010\n\n" + log.note(20).encode(),
        b"old -1\n\n" + log.note(20).encode(),
        b"old 1\nnot base64\n\n" + log.note(20).encode(),
        b"old 1\n" + log.note(20).encode(),
        b"old 1\n" + b"".join([base64.b64encode(bytes(32)) + b"\n"] * 64) + b"\n",
        b"\xff\xfe",
    ]:
        with pytest.raises(WitnessRefusal) as caught:
            parse_add_checkpoint(bad)
        assert caught.value.kind == "bad-request"


def test_the_witness_http_server_answers_with_the_spec_status_codes(
    witness: Witness, log: Log
) -> None:
    server = WitnessServer(witness).start()
    try:
        with httpx.Client(base_url=server.url) as http:

            def post(old: int, proof: list[bytes], note: str) -> httpx.Response:
                body = format_add_checkpoint(old, proof, note)
                return http.post("/add-checkpoint", content=body)

            ok = post(0, [], log.note(8))
            assert ok.status_code == 200
            lines = parse_cosignatures(ok.content)
            assert count_signatures(log.note(8) + "".join(lines), [witness_key(witness.vkey)])
            conflict = post(0, [], log.note(9))
            assert conflict.status_code == 409
            assert conflict.headers["content-type"] == "text/x.tlog.size"
            assert conflict.text == "8\n"
            assert post(8, log.proof(8, 12), log.note(12)).status_code == 200
            assert post(12, log.proof(8, 12), log.note(15)).status_code == 422
            assert post(13, [], log.note(12)).status_code == 400
            assert post(12, [], Log(Signer.generate(ORIGIN), 13).note(13)).status_code == 403
            assert http.post("/add-checkpoint", content=b"garbage").status_code == 400
            origin_hash = hashlib.sha256(ORIGIN.encode()).hexdigest()
            latest = http.get(f"/{origin_hash}/checkpoint")
            assert latest.status_code == 200 and latest.text.startswith(log.note(12))
    finally:
        server.shutdown()
        server.server_close()


def test_the_offline_verifier_counts_cosignature_v1_witnesses(
    tmp_path: Path, log: Log, witness: Witness, capsys: pytest.CaptureFixture[str]
) -> None:
    from audit import write_bundle
    from audit.verify import main

    bodies = [encode(make_event(i)) for i in range(12)]
    note = log.note(12)
    cosigned = note + witness.add_checkpoint(0, [], note)
    path = tmp_path / "bundle.jsonl"
    write_bundle(path, bodies, [cosigned], [log.key.verifier().vkey])
    args = [str(path), "--vkey", log.key.verifier().vkey, "--witness", witness.vkey]
    assert main([*args, "--cosignatures", "1"]) == 0
    assert "witnessed up to size 12" in capsys.readouterr().out
    plain = witness.signer.verifier().vkey  # the same key as a plain 0x01 note key: not it
    assert main([*args[:-1], plain, "--cosignatures", "1"]) == 1
