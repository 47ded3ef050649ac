"""Token attacks against a real gateway whose identity provider is served on loopback by the test.

The gateway finds the provider's JWKS through OpenID Connect discovery, as in production. Each
attack class of issue 3 has a test here that fails when its defence is removed:

- an ID token presented as an access token (header ``typ``, or Keycloak's ``typ`` claim);
- an unknown ``crit`` header;
- keys carried in the token header (``jwk``, ``jku``, ``x5u``, ``x5c``);
- an algorithm outside the allow-list (``none``, HS256 keyed with the public key, a real
  signature with an algorithm the gateway is not configured for);
- a missing ``exp``, ``aud``, ``iss`` or ``sub``;
- a flood of unknown ``kid`` values (no amplification into requests to the provider);
- a JWKS endpoint that fails or answers garbage beyond the grace period (fail closed, 503);
- Unicode / case confusables in the department or subject.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from gateway import home
from gateway.api import create_app
from gateway.context import Gateway
from gateway.settings import Settings
from gateway.wiring import build_gateway
from tests.unit.gateway.auth.auth_testkit import FakeClock, RoutesServer

AUDIENCE = "insitu"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def craft(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


def es256_signer(key: ECKey) -> Callable[[bytes], bytes]:
    """Raw r||s ES256 signatures (JWS form) with a real P-256 key."""
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    private = key.private_key

    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(private.sign(data, ec.ECDSA(hashes.SHA256())))  # type: ignore[union-attr]
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return sign


@dataclass
class Idp:
    server: RoutesServer
    issuer: str
    key: ECKey
    rsa: RSAKey

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        base = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "zhang.wei",
            "iat": now,
            "exp": now + 300,
            "jti": secrets.token_urlsafe(8),
            "dept": "market",
            "realm_access": {"roles": ["analyst", "auditor"]},
            "typ": "Bearer",
        }
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}

    def token(self, header: dict[str, Any] | None = None, **claims: Any) -> str:
        full = {"alg": "ES256", "kid": "idp-ec", "typ": "at+jwt", **(header or {})}
        return craft(full, self.claims(**claims), es256_signer(self.key))

    def serve_keys(self) -> None:
        keys = [self.key.as_dict(private=False), self.rsa.as_dict(private=False)]
        self.server.json("/realms/gov/certs", {"keys": keys})

    @property
    def jwks_hits(self) -> int:
        return self.server.hits.get("/realms/gov/certs", 0)


@pytest.fixture(scope="module")
def idp_keys() -> tuple[ECKey, RSAKey]:
    return (
        ECKey.generate_key("P-256", parameters={"kid": "idp-ec", "use": "sig"}),
        RSAKey.generate_key(2048, parameters={"kid": "idp-rsa", "use": "sig"}),
    )


@pytest.fixture
def idp(idp_keys: tuple[ECKey, RSAKey]) -> Iterator[Idp]:
    server = RoutesServer()
    issuer = f"{server.base}/realms/gov"
    server.json(
        "/realms/gov/.well-known/openid-configuration",
        {"issuer": issuer, "jwks_uri": f"{issuer}/certs"},
    )
    provider = Idp(server, issuer, *idp_keys)
    provider.serve_keys()
    yield provider
    server.stop()


@pytest.fixture
def attacker_server() -> Iterator[RoutesServer]:
    server = RoutesServer()
    yield server
    server.stop()


GatewayFactory = Callable[..., TestClient]


@pytest.fixture
def gateway(tmp_path: Path, idp: Idp, _sqlite_schema: Path) -> Iterator[GatewayFactory]:
    clients: list[TestClient] = []
    gateways: list[Gateway] = []

    def make(**overrides: Any) -> TestClient:
        store = tmp_path / f"store{len(clients)}.db"
        shutil.copyfile(_sqlite_schema, store)  # migrated once per worker
        values: dict[str, Any] = {
            "home": tmp_path / f"home{len(clients)}",
            "database_url": f"sqlite:///{store}",
            "sandbox_spares": 0,  # these gateways run no job: no sandbox worker started
            "oidc_issuer": idp.issuer,  # no JWKS URL: discovery, as in production
            "oidc_department_claim": "dept",
            "oidc_roles_claim": "realm_access.roles",
            "token_algorithms": "ES256",
            **overrides,
        }
        clock = values.pop("jwks_clock", time.monotonic)
        settings = Settings(**values)
        home.init_home(settings)
        gw = build_gateway(settings, jwks_clock=clock)
        gateways.append(gw)
        client = TestClient(create_app(settings, gateway=gw, run_workers=False))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
    for gw in gateways:
        gw.close()


def status(client: TestClient, token: str) -> int:
    return client.get("/v1/datasets", headers={"Authorization": f"Bearer {token}"}).status_code


def test_the_provider_token_is_accepted(gateway: GatewayFactory, idp: Idp) -> None:
    """The baseline every attack below departs from."""
    assert status(gateway(), idp.token()) == 200


# --- ID token presented as an access token ---------------------------------------------------


@pytest.mark.parametrize("typ", ["JWT", None, "id_token+jwt"])
def test_id_token_refused_by_the_typ_header(
    gateway: GatewayFactory, idp: Idp, typ: str | None
) -> None:
    client = gateway()
    header: dict[str, Any] = {"typ": typ}
    token = idp.token(header, nonce="n-0S6_WzA2Mj", at_hash="77QmUPtjPfzWtF2AnpK9RQ")
    if typ is None:
        token = craft(
            {"alg": "ES256", "kid": "idp-ec"}, idp.claims(nonce="n"), es256_signer(idp.key)
        )
    assert status(client, token) == 401


def test_id_token_refused_by_the_type_claim_in_keycloak_mode(
    gateway: GatewayFactory, idp: Idp
) -> None:
    client = gateway(token_type="", token_type_claim="typ=Bearer")
    assert status(client, idp.token({"typ": "JWT"}, typ="Bearer")) == 200
    assert status(client, idp.token({"typ": "JWT"}, typ="ID")) == 401
    assert status(client, idp.token({"typ": "JWT"}, typ=None)) == 401


# --- critical headers and header-carried keys ------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"crit": ["urn:example:must-understand"], "urn:example:must-understand": True},
        {"crit": ["exp"]},
        {"crit": ["b64"], "b64": False},
    ],
)
def test_unknown_critical_header_refused(
    gateway: GatewayFactory, idp: Idp, extra: dict[str, Any]
) -> None:
    response = gateway().get(
        "/v1/datasets", headers={"Authorization": f"Bearer {idp.token(extra)}"}
    )
    assert response.status_code == 401
    # refused by the gateway's own header policy, before any key is looked up
    assert response.json()["detail"] == "unsupported critical header"


def _self_signed_certificate(key: ECKey) -> bytes:
    private = key.private_key
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.example.gov")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())  # type: ignore[union-attr]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(private, hashes.SHA256())  # type: ignore[arg-type]
    )
    return certificate.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("member", ["jwk", "jku", "x5u", "x5c"])
@pytest.mark.parametrize("kid", ["ours", "theirs"])
def test_keys_carried_in_the_header_are_never_used(
    gateway: GatewayFactory, idp: Idp, attacker_server: RoutesServer, member: str, kid: str
) -> None:
    client = gateway()
    attacker = ECKey.generate_key("P-256", parameters={"kid": "attacker"})
    attacker_server.json("/jwks", {"keys": [attacker.as_dict(private=False)]})
    attacker_server.raw("/cert.pem", _self_signed_certificate(attacker))
    carried: object = {
        "jwk": attacker.as_dict(private=False),
        "jku": f"{attacker_server.base}/jwks",
        "x5u": f"{attacker_server.base}/cert.pem",
        "x5c": [base64.b64encode(_self_signed_certificate(attacker)).decode()],
    }[member]
    header = {
        "alg": "ES256",
        "typ": "at+jwt",
        "kid": "idp-ec" if kid == "ours" else "attacker",
        member: carried,
    }
    token = craft(header, idp.claims(realm_access={"roles": ["auditor"]}), es256_signer(attacker))
    assert status(client, token) == 401
    assert attacker_server.hits == {}  # jku / x5u were never fetched


# --- algorithms -------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_refused(gateway: GatewayFactory, idp: Idp, alg: str) -> None:
    header = {"alg": alg, "kid": "idp-ec", "typ": "at+jwt"}
    assert status(gateway(), craft(header, idp.claims(), lambda _: b"")) == 401


@pytest.mark.parametrize("form", ["pem", "jwk-json", "der", "x"])
@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_keyed_with_the_public_key_refused(
    gateway: GatewayFactory, idp: Idp, form: str, alg: str
) -> None:
    """Algorithm confusion: the provider's public key, which anyone can fetch, as HMAC secret."""
    public = idp.key.public_key
    secret = {
        "pem": idp.key.as_pem(private=False),
        "jwk-json": json.dumps(idp.key.as_dict(private=False)).encode(),
        "der": public.public_bytes(  # type: ignore[union-attr]
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "x": str(idp.key.as_dict(private=False)["x"]).encode(),
    }[form]
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    header = {"alg": alg, "kid": "idp-ec", "typ": "at+jwt"}
    token = craft(header, idp.claims(), lambda data: hmac.new(secret, data, digest).digest())
    assert status(gateway(), token) == 401


def test_real_signature_with_an_algorithm_outside_the_allow_list_refused(
    gateway: GatewayFactory, idp: Idp
) -> None:
    """The provider's RSA key is in its JWKS, but this gateway allows ES256 only."""
    token = jwt.encode(
        {"alg": "RS256", "kid": "idp-rsa", "typ": "at+jwt"},
        idp.claims(),
        idp.rsa,
        algorithms=["RS256"],
    )
    assert status(gateway(), token) == 401
    assert status(gateway(token_algorithms="ES256,RS256"), token) == 200


# --- required claims ------------------------------------------------------------------------


@pytest.mark.parametrize("claim", ["exp", "aud", "iss", "sub"])
def test_token_missing_a_required_claim_refused(
    gateway: GatewayFactory, idp: Idp, claim: str
) -> None:
    assert status(gateway(), idp.token(**{claim: None})) == 401


@pytest.mark.parametrize(
    "overrides",
    [{"aud": "account"}, {"iss": "https://evil.example/realms/gov"}, {"exp": 1}],
)
def test_token_with_a_wrong_registered_claim_refused(
    gateway: GatewayFactory, idp: Idp, overrides: dict[str, Any]
) -> None:
    assert status(gateway(), idp.token(**overrides)) == 401


# --- the provider's key set under attack and failure ----------------------------------------


def test_kid_flood_does_not_amplify_into_provider_requests(
    gateway: GatewayFactory, idp: Idp
) -> None:
    clock = FakeClock()
    client = gateway(jwks_clock=clock)
    assert status(client, idp.token()) == 200
    before = idp.jwks_hits
    attacker = ECKey.generate_key("P-256")
    for _ in range(150):
        header = {"alg": "ES256", "kid": secrets.token_hex(8), "typ": "at+jwt"}
        assert status(client, craft(header, idp.claims(), es256_signer(attacker))) == 401
    assert idp.jwks_hits - before <= 1  # one refresh per interval, whatever the number of kids
    clock.advance(31)  # past the 30 s interval: one more refresh, then quiet again
    for _ in range(20):
        header = {"alg": "ES256", "kid": secrets.token_hex(8), "typ": "at+jwt"}
        assert status(client, craft(header, idp.claims(), es256_signer(attacker))) == 401
    assert idp.jwks_hits - before <= 2
    assert status(client, idp.token()) == 200


@pytest.mark.parametrize("outage", ["garbage", "status-500", "no-usable-keys", "html"])
@pytest.mark.slow
def test_jwks_failure_keeps_last_good_keys_then_fails_closed(
    gateway: GatewayFactory, idp: Idp, outage: str
) -> None:
    clock = FakeClock()
    client = gateway(
        jwks_clock=clock,
        jwks_refresh_interval_s=30,
        jwks_cache_ttl_s=300,
        jwks_max_stale_s=3600,
    )
    assert status(client, idp.token()) == 200
    body, code = {
        "garbage": (b"{not json", 200),
        "status-500": (b"oops", 500),
        "no-usable-keys": (b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', 200),
        "html": (b"<html>sign in</html>", 200),
    }[outage]
    idp.server.raw("/realms/gov/certs", body, status=code)
    clock.advance(301)  # the cache is due: the refresh fails
    hits = idp.jwks_hits
    assert status(client, idp.token()) == 200  # inside the grace period: last good keys
    assert client.app.state.gateway.key_source.settle()  # the refresh runs in the background
    assert idp.jwks_hits == hits + 1  # the refresh really was attempted
    clock.advance(3300)  # 3601 s since the last good keys
    refused = client.get("/v1/datasets", headers={"Authorization": f"Bearer {idp.token()}"})
    assert refused.status_code == 503  # past the grace period: fail closed
    assert refused.headers["content-type"].startswith("application/problem+json")
    # the provider recovers: so does the gateway, at the next refresh
    idp.serve_keys()
    clock.advance(31)
    assert status(client, idp.token()) == 200


def test_metadata_naming_another_issuer_is_not_followed(
    gateway: GatewayFactory, idp: Idp, attacker_server: RoutesServer
) -> None:
    """A hijacked metadata document pointing at the attacker's keys: not trusted, 503."""
    attacker = ECKey.generate_key("P-256", parameters={"kid": "idp-ec"})
    attacker_server.json("/certs", {"keys": [attacker.as_dict(private=False)]})
    idp.server.json(
        "/realms/gov/.well-known/openid-configuration",
        {"issuer": attacker_server.base, "jwks_uri": f"{attacker_server.base}/certs"},
    )
    header = {"alg": "ES256", "kid": "idp-ec", "typ": "at+jwt"}
    forged = craft(header, idp.claims(realm_access={"roles": ["auditor"]}), es256_signer(attacker))
    assert status(gateway(), forged) == 503
    assert attacker_server.hits == {}


def test_provider_down_from_the_start_fails_closed(gateway: GatewayFactory, idp: Idp) -> None:
    idp.server.raw("/realms/gov/.well-known/openid-configuration", b"", status=503)
    assert status(gateway(), idp.token()) == 503


# --- Unicode and case confusables -----------------------------------------------------------


def _audit_actors(client: TestClient, token: str) -> list[dict[str, Any]]:
    response = client.get("/v1/audit/entries", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return [item["event"].get("actor", {}) for item in response.json()["items"]]


@pytest.mark.parametrize(
    ("claims", "subject", "department"),
    [
        ({"dept": "ＭＡＲＫＥＴ"}, "zhang.wei", "market"),  # full-width
        ({"dept": "Market"}, "zhang.wei", "market"),
        ({"sub": "Zhang.Wei"}, "zhang.wei", "market"),
        ({"sub": "ｚｈａｎｇ.ｗｅｉ"}, "zhang.wei", "market"),
        ({"sub": "\u212aim", "dept": "\u212aey"}, "kim", "key"),  # KELVIN SIGN
    ],
)
def test_case_and_width_variants_reach_policy_as_one_canonical_name(
    gateway: GatewayFactory, idp: Idp, claims: dict[str, Any], subject: str, department: str
) -> None:
    client = gateway()
    token = idp.token(**claims)
    _audit_actors(client, token)  # this read is itself audited, with the caller's names
    actor = _audit_actors(client, token)[-1]
    assert (actor["subject"], actor["department"]) == (subject, department)


@pytest.mark.parametrize(
    "claims",
    [
        {"dept": "m\u0430rket"},  # Cyrillic a
        {"dept": "market\u200b"},  # zero-width space
        {"dept": "marke\u0301t"},  # combining accent
        {"dept": "\u202emarket"},  # right-to-left override
        {"dept": "market "},
        {"sub": "zh\u0430ng.wei"},  # Cyrillic a
        {"sub": "zhang.wei\u200d"},  # zero-width joiner
        {"sub": "zhang.wei\n"},
        {"sub": "ＺＨＡＮＧ　ＷＥＩ"},  # ideographic space
    ],
)
def test_confusable_department_or_subject_is_refused(
    gateway: GatewayFactory, idp: Idp, claims: dict[str, Any]
) -> None:
    assert status(gateway(), idp.token(**claims)) == 401
