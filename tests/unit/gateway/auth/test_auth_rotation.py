"""Local issuer key rotation: a window in which the old and the new key are both valid."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from gateway.auth import (
    IssuerKeys,
    KeySourceUnavailable,
    LocalIssuer,
    TokenInvalid,
    TokenVerifier,
)
from gateway.auth.localsource import LocalKeySource
from tests.unit.gateway.auth.auth_testkit import AUDIENCE, ISSUER

NOW = 1_800_000_000.0


def kids(jwks: dict[str, object]) -> list[str]:
    return [entry["kid"] for entry in jwks["keys"]]  # type: ignore[attr-defined]


def issue(keys: IssuerKeys, subject: str) -> str:
    return LocalIssuer(keys, issuer=ISSUER, audience=AUDIENCE).issue(
        subject=subject, department="market", roles=[]
    )


def test_previous_key_valid_during_the_window_only(tmp_path: Path) -> None:
    path = tmp_path / "issuer.jwks.json"
    old = IssuerKeys.generate(path)
    new = old.rotate(path, overlap_s=600, now=NOW)
    assert new.not_after(old.kid) == NOW + 600
    assert kids(new.public_jwks(NOW + 599)) == [new.kid, old.kid]
    assert kids(new.public_jwks(NOW + 600)) == [new.kid]
    loaded = IssuerKeys.load(path)  # the window is stored in the file
    assert kids(loaded.public_jwks(NOW + 599)) == [new.kid, old.kid]
    assert kids(loaded.public_jwks(NOW + 601)) == [new.kid]
    assert json.loads(path.read_text())["not_after"] == {old.kid: int(NOW + 600)}


def test_overlap_zero_revokes_every_earlier_key_at_once(tmp_path: Path) -> None:
    path = tmp_path / "issuer.jwks.json"
    oldest = IssuerKeys.generate(path)
    old = oldest.rotate(path, overlap_s=600, now=NOW, keep=5)
    new = old.rotate(path, overlap_s=0, now=NOW + 1, keep=5)
    assert kids(IssuerKeys.load(path).public_jwks(NOW + 1)) == [new.kid]
    assert not new.is_valid(old.kid, NOW + 1) and not new.is_valid(oldest.kid, NOW + 1)


def test_rotation_drops_keys_whose_window_ended(tmp_path: Path) -> None:
    path = tmp_path / "issuer.jwks.json"
    first = IssuerKeys.generate(path)
    second = first.rotate(path, overlap_s=60, now=NOW, keep=5)
    third = second.rotate(path, overlap_s=600, now=NOW + 120, keep=5)
    stored = [entry["kid"] for entry in json.loads(path.read_text())["keys"]]
    assert stored == [third.kid, second.kid]  # the first key's window had ended
    assert json.loads(path.read_text())["not_after"] == {second.kid: int(NOW + 720)}


@pytest.mark.parametrize("overlap", [-1, 400 * 86400, float("nan")])
def test_overlap_out_of_range_refused(
    issuer_keys: IssuerKeys, tmp_path: Path, overlap: float
) -> None:
    with pytest.raises(ValueError, match="overlap"):
        issuer_keys.rotate(tmp_path / "issuer.jwks.json", overlap_s=overlap)


def test_concurrent_rotations_lose_no_key(tmp_path: Path) -> None:
    path = tmp_path / "issuer.jwks.json"
    IssuerKeys.generate(path)
    barrier = threading.Barrier(6)
    results: list[IssuerKeys] = []

    def rotate() -> None:
        barrier.wait()
        results.append(IssuerKeys.rotate_file(path, keep=10, overlap_s=3600))

    threads = [threading.Thread(target=rotate) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = IssuerKeys.load(path)
    assert len(final.public_jwks()["keys"]) == 7  # type: ignore[arg-type]
    assert {keys.kid for keys in results} <= set(kids(final.public_jwks()))


def test_key_file_without_windows_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "issuer.jwks.json"
    old = IssuerKeys.generate(path)
    new = old.rotate(path, overlap_s=60, now=NOW)
    document = json.loads(path.read_text())
    del document["not_after"]
    path.unlink()
    path.write_text(json.dumps(document))
    path.chmod(0o600)
    assert kids(IssuerKeys.load(path).public_jwks(NOW + 10**6)) == [new.kid, old.kid]


@pytest.mark.parametrize("not_after", [[], {"x": "soon"}, {"x": True}, "x"])
def test_malformed_windows_refused(tmp_path: Path, not_after: object) -> None:
    path = tmp_path / "issuer.jwks.json"
    IssuerKeys.generate(path)
    document = json.loads(path.read_text())
    document["not_after"] = not_after
    path.unlink()
    path.write_text(json.dumps(document))
    path.chmod(0o600)
    with pytest.raises(Exception, match="malformed"):
        IssuerKeys.load(path)


# --- the running gateway's view: LocalKeySource ------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_rotation_by_another_process_reaches_a_running_verifier(tmp_path: Path) -> None:
    path = tmp_path / "issuer.jwks.json"
    old = IssuerKeys.generate(path)
    clock = Clock()
    source = LocalKeySource(path, clock=clock)
    verifier = TokenVerifier(source, issuer=ISSUER, audience=AUDIENCE)
    old_token = issue(old, "alice")
    assert verifier.verify(old_token).subject == "alice"

    new = IssuerKeys.rotate_file(path, overlap_s=600)  # as `insitu token rotate-key` does
    new_token = issue(new, "bob")
    assert verifier.verify(new_token).subject == "bob"
    assert verifier.verify(old_token).subject == "alice"  # inside the window
    assert kids(source.public_jwks()) == [new.kid, old.kid]

    # the window has ended; the file did not change again. Counted from the rotation, not from
    # `clock`'s start: the window is ceil(rotation time + 600), so `clock.now += 601` fell
    # short whenever the few milliseconds between Clock() and the rotation crossed a second.
    clock.now = time.time() + 601
    assert verifier.verify(new_token).subject == "bob"
    with pytest.raises(TokenInvalid, match="untrusted signing key"):
        verifier.verify(old_token)
    assert kids(source.public_jwks()) == [new.kid]


def test_revoking_rotation_refuses_old_tokens_at_once(tmp_path: Path) -> None:
    path = tmp_path / "issuer.jwks.json"
    old = IssuerKeys.generate(path)
    verifier = TokenVerifier(LocalKeySource(path), issuer=ISSUER, audience=AUDIENCE)
    old_token = issue(old, "alice")
    assert verifier.verify(old_token).subject == "alice"
    IssuerKeys.rotate_file(path, overlap_s=0)
    with pytest.raises(TokenInvalid, match="untrusted signing key"):
        verifier.verify(old_token)


def test_key_file_made_unusable_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "issuer.jwks.json"
    keys = IssuerKeys.generate(path)
    source = LocalKeySource(path)
    verifier = TokenVerifier(source, issuer=ISSUER, audience=AUDIENCE)
    token = issue(keys, "alice")
    assert verifier.verify(token).subject == "alice"
    path.chmod(0o644)
    with pytest.raises(KeySourceUnavailable):
        verifier.verify(token)
    path.chmod(0o600)
    assert verifier.verify(token).subject == "alice"
    path.unlink()
    with pytest.raises(KeySourceUnavailable):
        verifier.verify(token)


def test_bad_key_file_at_start_up_is_an_actionable_error(tmp_path: Path) -> None:
    from gateway.auth import IssuerKeyError

    path = tmp_path / "issuer.jwks.json"
    with pytest.raises(IssuerKeyError, match="not found"):
        LocalKeySource(path)
    IssuerKeys.generate(path)
    path.chmod(0o644)
    with pytest.raises(IssuerKeyError, match="chmod 600"):
        LocalKeySource(path)
