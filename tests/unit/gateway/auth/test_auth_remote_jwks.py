from __future__ import annotations

import secrets
import threading
from typing import Any

import httpx
import pytest
from joserfc.jwk import OKPKey

from gateway.auth import (
    IssuerKeys,
    KeySourceUnavailable,
    LocalIssuer,
    RemoteJwks,
    TokenInvalid,
    TokenVerifier,
    import_public_jwks,
)
from tests.unit.gateway.auth.auth_testkit import (
    AUDIENCE,
    ISSUER,
    FakeClock,
    JwksServer,
    claims,
    craft,
    ed25519_signer,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def remote(
    jwks_server: JwksServer,
    issuer_keys: IssuerKeys,
    http_client: httpx.Client,
    clock: FakeClock,
) -> RemoteJwks:
    jwks_server.serve(issuer_keys.public_jwks())
    return RemoteJwks(
        jwks_server.url,
        http_client=http_client,
        min_refresh_interval_s=30,
        cache_ttl_s=300,
        max_stale_s=3600,
        clock=clock,
    )


def kids(remote: RemoteJwks, kid: str | None = None) -> set[str | None]:
    return {key.kid for key in remote.get_key_set(kid).keys}


def test_keys_fetched_once_and_cached(
    remote: RemoteJwks, jwks_server: JwksServer, issuer_keys: IssuerKeys, clock: FakeClock
) -> None:
    for _ in range(5):
        assert kids(remote, issuer_keys.kid) == {issuer_keys.kid}
        clock.advance(10)
    assert jwks_server.hits == 1


def test_unknown_kid_flood_refreshes_at_most_once_per_interval(
    remote: RemoteJwks, jwks_server: JwksServer, issuer_keys: IssuerKeys, clock: FakeClock
) -> None:
    remote.get_key_set(issuer_keys.kid)
    assert jwks_server.hits == 1
    clock.advance(31)
    for _ in range(200):
        remote.get_key_set(secrets.token_hex(8))
    assert remote.settle()
    assert jwks_server.hits == 2  # one refresh for the whole flood
    clock.advance(29)
    for _ in range(50):
        remote.get_key_set(secrets.token_hex(8))
    assert remote.settle()
    assert jwks_server.hits == 2
    clock.advance(2)
    for _ in range(50):
        remote.get_key_set(secrets.token_hex(8))
    assert remote.settle()
    assert jwks_server.hits == 3


def test_concurrent_unknown_kid_flood_makes_one_request(
    remote: RemoteJwks, jwks_server: JwksServer, issuer_keys: IssuerKeys, clock: FakeClock
) -> None:
    remote.get_key_set(issuer_keys.kid)
    clock.advance(31)
    errors: list[BaseException] = []

    def flood() -> None:
        try:
            for _ in range(20):
                remote.get_key_set(secrets.token_hex(8))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=flood) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert remote.settle()
    assert not errors
    assert jwks_server.hits == 2


def test_unknown_kid_flood_through_verifier_is_refused_without_amplification(
    remote: RemoteJwks, jwks_server: JwksServer
) -> None:
    verifier = TokenVerifier(remote, issuer=ISSUER, audience=AUDIENCE)
    attacker = OKPKey.generate_key("Ed25519")
    for _ in range(100):
        token = craft(
            {"alg": "Ed25519", "kid": secrets.token_hex(8), "typ": "at+jwt"},
            claims(),
            ed25519_signer(attacker),
        )
        with pytest.raises(TokenInvalid, match="untrusted signing key"):
            verifier.verify(token)
    assert jwks_server.hits == 1


def test_new_key_at_the_provider_is_picked_up_after_the_interval(
    remote: RemoteJwks,
    jwks_server: JwksServer,
    issuer_keys: IssuerKeys,
    tmp_path: Any,
    clock: FakeClock,
) -> None:
    verifier = TokenVerifier(remote, issuer=ISSUER, audience=AUDIENCE)
    old = LocalIssuer(issuer_keys, issuer=ISSUER, audience=AUDIENCE)
    assert verifier.verify(old.issue(subject="a", department="market", roles=[])).subject == "a"
    rotated = issuer_keys.rotate(tmp_path / "issuer.jwks.json")
    jwks_server.serve(rotated.public_jwks())
    new_token = LocalIssuer(rotated, issuer=ISSUER, audience=AUDIENCE).issue(
        subject="b", department="market", roles=[]
    )
    clock.advance(5)  # inside the interval: the new kid is not fetched yet
    with pytest.raises(TokenInvalid, match="untrusted signing key"):
        verifier.verify(new_token)
    clock.advance(30)
    # The unknown kid starts a refresh in the background and is refused meanwhile (a caller
    # never waits on the provider while keys are cached); once it lands, the kid is known.
    with pytest.raises(TokenInvalid, match="untrusted signing key"):
        verifier.verify(new_token)
    assert remote.settle()
    assert verifier.verify(new_token).subject == "b"
    assert jwks_server.hits == 2


@pytest.mark.parametrize("outage", ["stopped", "status-500", "garbage", "no-usable-keys"])
def test_last_good_keys_kept_until_max_stale_then_fail_closed(
    remote: RemoteJwks,
    jwks_server: JwksServer,
    issuer_keys: IssuerKeys,
    clock: FakeClock,
    outage: str,
) -> None:
    assert kids(remote) == {issuer_keys.kid}
    if outage == "stopped":
        jwks_server.stop()
    elif outage == "status-500":
        jwks_server.serve_raw(b"oops", status=500)
    elif outage == "garbage":
        jwks_server.serve_raw(b"{not json")
    else:
        jwks_server.serve({"keys": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"}]})
    hits_before = jwks_server.hits
    clock.advance(301)  # cache is due for a refresh, which fails
    assert kids(remote) == {issuer_keys.kid}
    assert remote.settle()
    clock.advance(3299)  # 3600 s since the last good fetch: still served
    assert kids(remote, "unknown") == {issuer_keys.kid}
    assert remote.settle()
    clock.advance(1)
    with pytest.raises(KeySourceUnavailable):
        remote.get_key_set(issuer_keys.kid)
    if outage != "stopped":
        assert jwks_server.hits > hits_before  # the refreshes really were attempted


def test_recovers_when_the_endpoint_comes_back(
    remote: RemoteJwks, jwks_server: JwksServer, issuer_keys: IssuerKeys, clock: FakeClock
) -> None:
    remote.get_key_set(None)
    jwks_server.serve_raw(b"", status=503)
    clock.advance(3601)  # past max_stale: the caller waits for the (failing) refresh
    with pytest.raises(KeySourceUnavailable):
        remote.get_key_set(None)
    jwks_server.serve(issuer_keys.public_jwks())
    clock.advance(31)
    assert kids(remote) == {issuer_keys.kid}


def test_unavailable_from_the_start_fails_closed(
    jwks_server: JwksServer, http_client: httpx.Client, issuer_keys: IssuerKeys
) -> None:
    jwks_server.serve_raw(b"<html>", status=200)
    source = RemoteJwks(jwks_server.url, http_client=http_client)
    verifier = TokenVerifier(source, issuer=ISSUER, audience=AUDIENCE)
    token = LocalIssuer(issuer_keys, issuer=ISSUER, audience=AUDIENCE).issue(
        subject="a", department="market", roles=[]
    )
    with pytest.raises(KeySourceUnavailable):
        verifier.verify(token)


def test_oversize_response_is_garbage(
    jwks_server: JwksServer, http_client: httpx.Client, issuer_keys: IssuerKeys
) -> None:
    jwks_server.serve_raw(b"{" + b" " * 300_000 + b"}")
    with pytest.raises(KeySourceUnavailable):
        RemoteJwks(jwks_server.url, http_client=http_client).get_key_set(None)


def test_own_http_client_is_created_and_closed(
    jwks_server: JwksServer, issuer_keys: IssuerKeys
) -> None:
    jwks_server.serve(issuer_keys.public_jwks())
    with RemoteJwks(jwks_server.url) as source:
        assert {k.kid for k in source.get_key_set(None).keys} == {issuer_keys.kid}


@pytest.mark.parametrize(
    "url",
    ["http://idp.example/jwks", "ftp://127.0.0.1/jwks", "file:///etc/jwks.json", "jwks.json"],
)
def test_url_must_be_https_except_on_loopback(url: str) -> None:
    with pytest.raises(ValueError, match="https"):
        RemoteJwks(url)


def test_refresh_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="min_refresh_interval_s"):
        RemoteJwks("https://idp.example/jwks", cache_ttl_s=7200, max_stale_s=3600)


def test_only_public_signing_keys_of_allowed_types_are_imported() -> None:
    ed = OKPKey.generate_key("Ed25519", parameters={"kid": "ed"})
    x25519 = OKPKey.generate_key("X25519", parameters={"kid": "x"})
    private_entry = {**ed.as_dict(private=True), "x5c": ["MIIB"], "use": "sig"}
    jwks = {
        "keys": [
            private_entry,
            {**ed.as_dict(private=False), "kid": "enc", "use": "enc"},
            {**ed.as_dict(private=False), "kid": "ops", "key_ops": ["encrypt"]},
            {**x25519.as_dict(private=False)},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "small", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "kid": "bad", "crv": "P-256", "x": "AA", "y": "AA"},
            "not a key",
        ]
    }
    key_set = import_public_jwks(jwks)
    [key] = key_set.keys
    assert key.kid == "ed" and not key.is_private
    assert "d" not in key.as_dict() and "x5c" not in key.as_dict()
    with pytest.raises(ValueError, match="JWKS"):
        import_public_jwks({"keys": "x"})


def test_keys_with_unreadable_alg_or_kid_are_not_imported() -> None:
    ed = OKPKey.generate_key("Ed25519", parameters={"kid": "ed"})
    public = ed.as_dict(private=False)
    for extra in ({"alg": ["Ed25519"]}, {"alg": None}, {"kid": 7}, {"kid": None}):
        # Dropping the member instead would leave a key usable for any algorithm / any token.
        assert import_public_jwks({"keys": [{**public, **extra}]}).keys == []
    assert len(import_public_jwks({"keys": [public]}).keys) == 1
