"""The CLI token cache: only ever ours, and a token only for the gateway it was cached for."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from gateway.cli.credentials import Credential, TokenCache, cached_token
from gateway.cli.output import CliError


def credential(token: str = "access-A") -> Credential:
    return Credential(
        issuer="https://idp.test/realms/gov",
        client_id="insitu-cli",
        grant="device_code",
        token_endpoint="https://idp.test/realms/gov/token",
        access_token=token,
        expires_at=int(time.time()) + 3600,
    )


@pytest.fixture
def cache(tmp_path: Path) -> TokenCache:
    directory = tmp_path / "config"
    cache = TokenCache(directory)
    cache.put("https://a.example.gov", credential())
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o600
    return cache


def test_a_token_is_only_for_the_gateway_it_was_cached_for(cache: TokenCache) -> None:
    assert cached_token("https://a.example.gov", cache) == "access-A"
    for other in (
        "https://b.example.gov",
        "https://a.example.gov.evil.test",
        "http://a.example.gov",
        "https://a.example.gov:8443",
    ):
        assert cached_token(other, cache) is None


def test_directory_writable_by_others_is_refused(cache: TokenCache) -> None:
    # Whoever can write the directory can swap the file, and with it the token endpoint
    # that INSITU_CLIENT_SECRET and the refresh token are sent to.
    cache.directory.chmod(0o777)
    with pytest.raises(CliError, match="not yours alone"):
        cache.get("https://a.example.gov")
    with pytest.raises(CliError, match="not yours alone"):
        cache.put("https://b.example.gov", credential("access-B"))
    cache.directory.chmod(0o700)
    assert cached_token("https://a.example.gov", cache) == "access-A"


def test_cache_file_owned_by_someone_else_is_refused(
    cache: TokenCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mode still 0600, but planted by another user. Giving a file away needs root, so the
    file's owner as the cache reads it (fstat of the open file) is another user's, whoever
    runs the test; the directory stays ours."""
    real_fstat = os.fstat
    ours = os.geteuid()

    def planted(fd: int) -> os.stat_result:
        info = real_fstat(fd)
        if info.st_ino != cache.path.stat().st_ino:
            return info
        fields = list(info)
        fields[stat.ST_UID] = ours + 1
        return os.stat_result(fields)

    monkeypatch.setattr(os, "fstat", planted)
    with pytest.raises(CliError, match="accessible by group or others"):
        cache.get("https://a.example.gov")
    monkeypatch.undo()
    assert cached_token("https://a.example.gov", cache) == "access-A"


def test_directory_owned_by_someone_else_is_refused(
    cache: TokenCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mode 0700, but not ours: the test runs as a user other than the directory's owner
    (giving the directory away instead would need root)."""
    monkeypatch.setattr(os, "geteuid", lambda: cache.directory.stat().st_uid + 1)
    with pytest.raises(CliError, match="not yours alone"):
        cache.get("https://a.example.gov")
    with pytest.raises(CliError, match="not yours alone"):
        cache.put("https://b.example.gov", credential("access-B"))


def test_symlinked_cache_file_is_not_followed(cache: TokenCache, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.json"
    target.write_text("{}")
    target.chmod(0o600)
    cache.path.unlink()
    cache.path.symlink_to(target)
    with pytest.raises(CliError, match="cannot read"):
        cache.get("https://a.example.gov")
