from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from gateway.auth import IssuerKeyError, IssuerKeys


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generate_writes_private_jwks_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "issuer.jwks.json"
    old_umask = os.umask(0)  # even a permissive umask must not widen the file
    try:
        keys = IssuerKeys.generate(path)
    finally:
        os.umask(old_umask)
    assert mode(path) == 0o600
    [entry] = json.loads(path.read_text())["keys"]
    assert entry["kty"] == "OKP" and entry["crv"] == "Ed25519" and "d" in entry
    assert entry["kid"] == keys.kid == keys.signing_key().thumbprint()


def test_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "issuer.jwks.json"
    path.write_text("precious")
    with pytest.raises(IssuerKeyError, match="refusing to overwrite"):
        IssuerKeys.generate(path)
    assert path.read_text() == "precious"


def test_load_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "issuer.jwks.json"
    keys = IssuerKeys.generate(path)
    loaded = IssuerKeys.load(path)
    assert loaded.kid == keys.kid
    assert loaded.signing_key().is_private
    assert loaded.public_jwks() == keys.public_jwks()


@pytest.mark.parametrize("file_mode", [0o644, 0o640, 0o604, 0o660])
def test_load_refuses_file_accessible_by_group_or_others(tmp_path: Path, file_mode: int) -> None:
    path = tmp_path / "issuer.jwks.json"
    IssuerKeys.generate(path)
    path.chmod(file_mode)
    with pytest.raises(IssuerKeyError, match=r"accessible by group or others.*chmod 600"):
        IssuerKeys.load(path)


def test_load_refuses_missing_file_and_symlink(tmp_path: Path) -> None:
    with pytest.raises(IssuerKeyError, match="not found"):
        IssuerKeys.load(tmp_path / "absent.json")
    real = tmp_path / "real.json"
    IssuerKeys.generate(real)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    with pytest.raises(IssuerKeyError):
        IssuerKeys.load(link)


def _write_0600(path: Path, content: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda doc: "not json",
        lambda doc: json.dumps({"keys": []}),
        lambda doc: json.dumps({"keys": "x"}),
        lambda doc: json.dumps([]),
        lambda doc: json.dumps({"keys": [{k: v for k, v in doc["keys"][0].items() if k != "d"}]}),
        lambda doc: json.dumps({"keys": [{**doc["keys"][0], "kid": "chosen-by-me"}]}),
        lambda doc: json.dumps({"keys": [{**doc["keys"][0], "crv": "X25519"}]}),
        lambda doc: json.dumps({"keys": [{**doc["keys"][0], "use": "enc"}]}),
        lambda doc: json.dumps({"keys": [doc["keys"][0], doc["keys"][0]]}),
    ],
    ids=[
        "garbage",
        "empty",
        "not-list",
        "not-object",
        "public-only",
        "bad-kid",
        "x25519",
        "enc",
        "duplicate",
    ],
)
def test_load_refuses_malformed_file(tmp_path: Path, mutate: object) -> None:
    source = tmp_path / "source.json"
    IssuerKeys.generate(source)
    doc = json.loads(source.read_text())
    path = tmp_path / "issuer.jwks.json"
    _write_0600(path, mutate(doc))  # type: ignore[operator]
    with pytest.raises(IssuerKeyError, match="malformed"):
        IssuerKeys.load(path)


def test_rotate_keeps_previous_public_key_and_newest_signs(tmp_path: Path) -> None:
    path = tmp_path / "issuer.jwks.json"
    first = IssuerKeys.generate(path)
    second = first.rotate(path)
    assert second.kid != first.kid
    assert [k["kid"] for k in second.public_jwks()["keys"]] == [second.kid, first.kid]  # type: ignore[attr-defined]
    assert mode(path) == 0o600
    stored = json.loads(path.read_text())["keys"]
    assert "d" in stored[0] and "d" not in stored[1]  # the retired key is kept public only
    assert IssuerKeys.load(path).kid == second.kid
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_rotate_keeps_at_most_keep_keys(tmp_path: Path) -> None:
    path = tmp_path / "issuer.jwks.json"
    keys = IssuerKeys.generate(path)
    kids = [keys.kid]
    for _ in range(3):
        keys = keys.rotate(path)
        kids.append(keys.kid)
    assert [k["kid"] for k in IssuerKeys.load(path).public_jwks()["keys"]] == kids[:-3:-1]  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="keep"):
        keys.rotate(path, keep=1)


def test_public_jwks_has_no_private_members(issuer_keys: IssuerKeys) -> None:
    entries = issuer_keys.public_jwks()["keys"]
    assert isinstance(entries, list)
    [entry] = entries
    assert entry == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": entry["x"],
        "kid": issuer_keys.kid,
        "alg": "Ed25519",
        "use": "sig",
    }


def test_generate_into_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IssuerKeyError, match="cannot write issuer key file"):
        IssuerKeys.generate(tmp_path / "absent" / "issuer.jwks.json")
