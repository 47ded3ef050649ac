"""OpenID Connect discovery: the JWKS is found through the issuer's metadata, served on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from gateway.auth import KeySourceUnavailable, RemoteJwks, TokenVerifier
from gateway.auth.discovery import DiscoveryError, discover, metadata_url, validate_metadata
from tests.unit.gateway.auth.auth_testkit import AUDIENCE, FakeClock, RoutesServer, claims

WELL_KNOWN = "/realms/gov/.well-known/openid-configuration"


@pytest.fixture
def idp() -> Iterator[RoutesServer]:
    server = RoutesServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "k1", "use": "sig"})


def publish(idp: RoutesServer, key: ECKey, **metadata: object) -> str:
    issuer = f"{idp.base}/realms/gov"
    idp.json(WELL_KNOWN, {"issuer": issuer, "jwks_uri": f"{idp.base}/certs", **metadata})
    idp.json("/certs", {"keys": [key.as_dict(private=False)]})
    return issuer


def token(key: ECKey, issuer: str) -> str:
    header = {"alg": "ES256", "kid": "k1", "typ": "at+jwt"}
    return jwt.encode(header, claims(iss=issuer), key, algorithms=["ES256"])


def test_jwks_found_through_the_issuer_metadata(idp: RoutesServer, key: ECKey) -> None:
    issuer = publish(idp, key)
    with RemoteJwks.discover(issuer) as source:
        verifier = TokenVerifier(source, issuer=issuer, audience=AUDIENCE)
        for _ in range(3):
            assert verifier.verify(token(key, issuer)).department == "market"
        assert source.url == f"{idp.base}/certs"
    assert idp.hits == {WELL_KNOWN: 1, "/certs": 1}


def test_metadata_url_drops_the_trailing_slash_of_the_issuer() -> None:
    assert metadata_url("https://idp.test/realms/gov/") == (
        "https://idp.test/realms/gov/.well-known/openid-configuration"
    )


@pytest.mark.parametrize(
    "claimed",
    [
        "{base}/realms/gov/",  # not exactly equal: a trailing slash
        "{base}/realms/other",
        "https://evil.test/realms/gov",
        "{base}/REALMS/gov",
        None,
    ],
)
def test_metadata_naming_another_issuer_is_not_trusted(
    idp: RoutesServer, key: ECKey, claimed: str | None
) -> None:
    issuer = publish(idp, key)
    metadata = {"jwks_uri": f"{idp.base}/certs"}
    if claimed is not None:
        metadata["issuer"] = claimed.format(base=idp.base)
    idp.json(WELL_KNOWN, metadata)
    with RemoteJwks.discover(issuer) as source, pytest.raises(KeySourceUnavailable):
        TokenVerifier(source, issuer=issuer, audience=AUDIENCE).verify(token(key, issuer))
    assert "/certs" not in idp.hits  # the untrusted jwks_uri was never fetched


@pytest.mark.parametrize(
    "jwks_uri",
    ["http://idp.example/certs", "file:///etc/passwd", "ftp://127.0.0.1/certs", 7, None],
)
def test_metadata_with_an_unsafe_jwks_uri_is_refused(
    idp: RoutesServer, key: ECKey, jwks_uri: object
) -> None:
    issuer = publish(idp, key)
    idp.json(WELL_KNOWN, {"issuer": issuer, "jwks_uri": jwks_uri})
    with RemoteJwks.discover(issuer) as source, pytest.raises(KeySourceUnavailable):
        source.get_key_set("k1")


@pytest.mark.parametrize("body", [b"<html>", b"[]", b'"issuer"', b"{" * 5000])
def test_garbage_metadata_is_refused(idp: RoutesServer, key: ECKey, body: bytes) -> None:
    issuer = publish(idp, key)
    idp.raw(WELL_KNOWN, body)
    with RemoteJwks.discover(issuer) as source, pytest.raises(KeySourceUnavailable):
        source.get_key_set("k1")


def test_discovery_retried_at_most_once_per_interval_then_recovers(
    idp: RoutesServer, key: ECKey
) -> None:
    issuer = publish(idp, key)
    idp.raw(WELL_KNOWN, b"oops", status=503)
    clock = FakeClock()
    with RemoteJwks.discover(issuer, min_refresh_interval_s=30, clock=clock) as source:
        for _ in range(50):
            with pytest.raises(KeySourceUnavailable):
                source.get_key_set("k1")
        assert idp.hits[WELL_KNOWN] == 1
        publish(idp, key)
        clock.advance(31)
        assert {k.kid for k in source.get_key_set("k1").keys} == {"k1"}
    assert idp.hits[WELL_KNOWN] == 2


def test_discover_returns_the_token_endpoints(idp: RoutesServer, key: ECKey) -> None:
    issuer = publish(idp, key, token_endpoint=f"{idp.base}/token")
    with httpx.Client() as client:
        metadata = discover(client, issuer)
    assert metadata["token_endpoint"] == f"{idp.base}/token"


@pytest.mark.parametrize(
    "member", ["token_endpoint", "device_authorization_endpoint", "authorization_endpoint"]
)
def test_metadata_endpoints_must_be_https(member: str) -> None:
    issuer = "https://idp.test"
    with pytest.raises(DiscoveryError, match=member):
        validate_metadata({"issuer": issuer, member: "http://idp.test/x"}, issuer)


@pytest.mark.parametrize("issuer", ["http://idp.example/realms/gov", "idp.example", "ftp://x"])
def test_issuer_must_be_https_except_on_loopback(issuer: str) -> None:
    with pytest.raises(ValueError, match="https"):
        RemoteJwks.discover(issuer)


def test_remote_jwks_needs_a_url_or_an_issuer() -> None:
    with pytest.raises(ValueError, match="issuer"):
        RemoteJwks(None)
