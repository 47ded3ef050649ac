from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

from gateway.auth import (
    InvalidIdentity,
    IssuerKeys,
    LocalIssuer,
    RemoteJwks,
    StaticKeySource,
    TokenInvalid,
    TokenMissing,
    TokenVerifier,
    parse_bearer,
)
from tests.unit.gateway.auth.auth_testkit import (
    AUDIENCE,
    ISSUER,
    JwksServer,
    b64url,
    claims,
    craft,
    ed25519_signer,
    hmac_signer,
)


def refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(TokenInvalid) as info:
        verifier.verify(token)
    return str(info.value.reason)


def signed(keys: IssuerKeys, header: dict[str, Any] | None = None, **claim_overrides: Any) -> str:
    """A token signed by the issuer's current key with a hand-made header and claims."""
    key = keys.signing_key()
    full_header = {"alg": "Ed25519", "kid": key.kid, "typ": "at+jwt", **(header or {})}
    return craft(full_header, claims(**claim_overrides), ed25519_signer(key))


# --- the happy path -------------------------------------------------------------------------


def test_issued_token_verifies_into_canonical_principal(
    issuer: LocalIssuer, verifier: TokenVerifier
) -> None:
    token = issuer.issue(
        subject="Alice", department="ＭＡＲＫＥＴ", roles=["Owner", "analyst"], ttl_s=600
    )
    p = verifier.verify(token)
    assert (p.subject, p.department, p.roles) == ("alice", "market", ("analyst", "owner"))
    assert p.token_id
    assert abs(p.expires_at.timestamp() - (time.time() + 600)) < 5
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "Ed25519", "kid": issuer._keys.kid, "typ": "at+jwt"}
    body = jwt.decode(token, issuer._keys.signing_key(), algorithms=["Ed25519"]).claims
    assert body["client_id"] == "insitu-local" and body["roles"] == ["analyst", "owner"]
    assert body["iss"] == ISSUER and body["aud"] == AUDIENCE
    assert body["nbf"] == body["iat"] == body["exp"] - 600


def test_issue_refuses_bad_names_and_ttl(issuer: LocalIssuer) -> None:
    with pytest.raises(InvalidIdentity):
        issuer.issue(subject="alice", department="market tax", roles=["analyst"])
    with pytest.raises(InvalidIdentity):
        issuer.issue(subject="alice bob", department="market", roles=[])
    for ttl in (0, -1, 86401):
        with pytest.raises(ValueError, match="ttl"):
            issuer.issue(subject="alice", department="market", roles=[], ttl_s=ttl)


def test_two_issued_tokens_have_distinct_jti(issuer: LocalIssuer, verifier: TokenVerifier) -> None:
    tokens = [issuer.issue(subject="a", department="market", roles=[]) for _ in range(2)]
    assert len({verifier.verify(t).token_id for t in tokens}) == 2


# --- time claims ------------------------------------------------------------------------------


def test_expired_token_refused_beyond_leeway(
    issuer_keys: IssuerKeys, verifier: TokenVerifier
) -> None:
    past = LocalIssuer(
        issuer_keys, issuer=ISSUER, audience=AUDIENCE, clock=lambda: time.time() - 600 - 31
    )
    token = past.issue(subject="alice", department="market", roles=[], ttl_s=600)
    assert refused(verifier, token) == "token expired"


def test_expired_token_accepted_within_leeway(
    issuer_keys: IssuerKeys, verifier: TokenVerifier
) -> None:
    past = LocalIssuer(
        issuer_keys, issuer=ISSUER, audience=AUDIENCE, clock=lambda: time.time() - 600 - 20
    )
    token = past.issue(subject="alice", department="market", roles=[], ttl_s=600)
    assert verifier.verify(token).subject == "alice"


def test_token_refused_when_nbf_or_iat_in_future(
    issuer_keys: IssuerKeys, verifier: TokenVerifier
) -> None:
    later = int(time.time()) + 120
    assert refused(verifier, signed(issuer_keys, nbf=later)) == "token not yet valid"
    assert refused(verifier, signed(issuer_keys, iat=later)) == "token issued in the future"


def test_token_refused_when_exp_is_not_a_number(
    issuer_keys: IssuerKeys, verifier: TokenVerifier
) -> None:
    assert refused(verifier, signed(issuer_keys, exp="tomorrow")) == "invalid expiry"
    assert refused(verifier, signed(issuer_keys, exp=True)) == "invalid expiry"


# --- issuer, audience, required claims -----------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"iss": "https://evil.test"}, "wrong issuer"),
        ({"aud": "another-service"}, "wrong audience"),
        ({"aud": ["another-service", "account"]}, "wrong audience"),
        ({"exp": None}, "missing required claim"),
        ({"sub": None}, "missing required claim"),
        ({"aud": None}, "missing required claim"),
        ({"iss": None}, "missing required claim"),
        ({"sub": "a b"}, "invalid subject"),
        ({"jti": 5}, "invalid claim"),
    ],
)
def test_token_refused_on_bad_registered_claims(
    issuer_keys: IssuerKeys, verifier: TokenVerifier, overrides: dict[str, Any], reason: str
) -> None:
    assert refused(verifier, signed(issuer_keys, **overrides)) == reason


def test_audience_list_naming_us_accepted(issuer_keys: IssuerKeys, verifier: TokenVerifier) -> None:
    assert verifier.verify(signed(issuer_keys, aud=["account", AUDIENCE])).subject == "alice"


# --- header policy ----------------------------------------------------------------------------


@pytest.mark.parametrize("typ", ["JWT", "jwt", "application/jwt", "", 7])
def test_id_token_typ_refused(
    issuer_keys: IssuerKeys, verifier: TokenVerifier, typ: object
) -> None:
    assert refused(verifier, signed(issuer_keys, {"typ": typ})) in {
        "wrong token type",
        "malformed token",
    }


def test_untyped_token_refused(issuer_keys: IssuerKeys, verifier: TokenVerifier) -> None:
    key = issuer_keys.signing_key()
    token = craft({"alg": "Ed25519", "kid": key.kid}, claims(), ed25519_signer(key))
    assert refused(verifier, token) == "wrong token type"


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt"])
def test_access_token_type_accepted_case_insensitively(
    issuer_keys: IssuerKeys, verifier: TokenVerifier, typ: str
) -> None:
    assert verifier.verify(signed(issuer_keys, {"typ": typ})).department == "market"


def test_token_type_claim_replaces_the_header_check(issuer_keys: IssuerKeys) -> None:
    """Keycloak marks its access tokens with a payload claim (typ=Bearer, ID tokens typ=ID)."""
    keycloak_like = TokenVerifier(
        StaticKeySource(issuer_keys.public_jwks()),
        issuer=ISSUER,
        audience=AUDIENCE,
        token_type=None,
        token_type_claim="typ=Bearer",
    )
    header = {"typ": "JWT"}
    assert keycloak_like.verify(signed(issuer_keys, header, typ="Bearer")).subject == "alice"
    assert refused(keycloak_like, signed(issuer_keys, header, typ="ID")) == "wrong token type"
    assert refused(keycloak_like, signed(issuer_keys, header)) == "wrong token type"


def test_both_checks_apply_when_both_are_configured(issuer_keys: IssuerKeys) -> None:
    strict = TokenVerifier(
        StaticKeySource(issuer_keys.public_jwks()),
        issuer=ISSUER,
        audience=AUDIENCE,
        token_type="at+jwt",
        token_type_claim="token_use=access",
    )
    assert strict.verify(signed(issuer_keys, token_use="access")).subject == "alice"
    assert refused(strict, signed(issuer_keys, token_use="id")) == "wrong token type"
    assert refused(strict, signed(issuer_keys, {"typ": "JWT"}, token_use="access")) == (
        "wrong token type"
    )


def test_configured_token_types_are_a_list(issuer_keys: IssuerKeys) -> None:
    two = TokenVerifier(
        StaticKeySource(issuer_keys.public_jwks()),
        issuer=ISSUER,
        audience=AUDIENCE,
        token_type="at+jwt, application/vnd.gov.access+jwt",
    )
    assert two.verify(signed(issuer_keys, {"typ": "vnd.gov.access+jwt"})).subject == "alice"
    assert refused(two, signed(issuer_keys, {"typ": "JWT"})) == "wrong token type"


@pytest.mark.parametrize(
    ("token_type", "claim", "message"),
    [
        (None, None, "token type check is required"),
        ("", None, "token type check is required"),
        ("", "  ", "token type check is required"),
        ("JWT", None, "ID tokens carry"),
        ("at+jwt,application/jwt", None, "ID tokens carry"),
        ("at+jwt", "typ", "claim=value"),
        ("at+jwt", "=Bearer", "claim=value"),
    ],
)
def test_type_check_cannot_be_switched_off_or_made_meaningless(
    issuer_keys: IssuerKeys, token_type: str | None, claim: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        TokenVerifier(
            StaticKeySource(issuer_keys.public_jwks()),
            issuer=ISSUER,
            audience=AUDIENCE,
            token_type=token_type,
            token_type_claim=claim,
        )


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_refused(issuer_keys: IssuerKeys, verifier: TokenVerifier, alg: str) -> None:
    token = craft({"alg": alg, "kid": issuer_keys.kid, "typ": "at+jwt"}, claims(), lambda _: b"")
    assert refused(verifier, token) == "unsupported algorithm"


@pytest.mark.parametrize("form", ["raw", "pem", "jwk-json", "x"])
def test_hs256_signed_with_public_key_refused(
    issuer_keys: IssuerKeys, verifier: TokenVerifier, form: str
) -> None:
    """Algorithm confusion: the attacker uses our *public* key as an HMAC secret."""
    public = issuer_keys.public_jwks()["keys"][0]  # type: ignore[index]
    secret = {
        "raw": issuer_keys.signing_key().public_key.public_bytes_raw(),
        "pem": issuer_keys.signing_key().as_pem(private=False),
        "jwk-json": json.dumps(public).encode(),
        "x": public["x"].encode(),
    }[form]
    token = craft(
        {"alg": "HS256", "kid": issuer_keys.kid, "typ": "at+jwt"}, claims(), hmac_signer(secret)
    )
    assert refused(verifier, token) == "unsupported algorithm"


@pytest.mark.parametrize("algorithms", [["HS256"], ["Ed25519", "HS512"], ["none"], ["Ed448"], []])
def test_verifier_refuses_symmetric_none_or_unknown_algorithms(
    issuer_keys: IssuerKeys, algorithms: list[str]
) -> None:
    with pytest.raises(ValueError, match="algorithms"):
        TokenVerifier(
            StaticKeySource(issuer_keys.public_jwks()),
            issuer=ISSUER,
            audience=AUDIENCE,
            algorithms=algorithms,
        )


def test_alg_outside_allow_list_refused(issuer_keys: IssuerKeys) -> None:
    only_es256 = TokenVerifier(
        StaticKeySource(issuer_keys.public_jwks()),
        issuer=ISSUER,
        audience=AUDIENCE,
        algorithms=["ES256"],
    )
    assert refused(only_es256, signed(issuer_keys)) == "unsupported algorithm"


def test_token_of_unknown_key_refused(verifier: TokenVerifier) -> None:
    stranger = OKPKey.generate_key("Ed25519", parameters={"kid": "stranger"})
    token = craft(
        {"alg": "Ed25519", "kid": "stranger", "typ": "at+jwt"}, claims(), ed25519_signer(stranger)
    )
    assert refused(verifier, token) == "untrusted signing key"


def test_token_of_unknown_key_claiming_our_kid_refused(
    issuer_keys: IssuerKeys, verifier: TokenVerifier
) -> None:
    stranger = OKPKey.generate_key("Ed25519")
    token = craft(
        {"alg": "Ed25519", "kid": issuer_keys.kid, "typ": "at+jwt"},
        claims(),
        ed25519_signer(stranger),
    )
    assert refused(verifier, token) == "invalid signature"


@pytest.mark.parametrize("kid", ["ours", "theirs", "absent"])
def test_embedded_jwk_header_ignored(
    issuer_keys: IssuerKeys, verifier: TokenVerifier, kid: str
) -> None:
    attacker = OKPKey.generate_key("Ed25519")
    attacker.ensure_kid()
    header: dict[str, Any] = {
        "alg": "Ed25519",
        "typ": "at+jwt",
        "jwk": attacker.as_dict(private=False),
    }
    if kid != "absent":
        header["kid"] = issuer_keys.kid if kid == "ours" else attacker.kid
    token = craft(header, claims(roles=["admin"]), ed25519_signer(attacker))
    assert refused(verifier, token) in {"invalid signature", "untrusted signing key"}


def test_jku_and_x5u_headers_never_fetched(
    issuer_keys: IssuerKeys, verifier: TokenVerifier, jwks_server: JwksServer
) -> None:
    attacker = OKPKey.generate_key("Ed25519", parameters={"kid": "evil"})
    jwks_server.serve({"keys": [attacker.as_dict(private=False)]})
    for member in ("jku", "x5u"):
        header = {"alg": "Ed25519", "kid": "evil", "typ": "at+jwt", member: jwks_server.url}
        token = craft(header, claims(), ed25519_signer(attacker))
        assert refused(verifier, token) == "untrusted signing key"
    assert jwks_server.hits == 0


def test_trusted_token_with_jwk_header_still_verifies(
    issuer_keys: IssuerKeys, verifier: TokenVerifier
) -> None:
    """The header is ignored, not a reason to refuse: the key still comes from the KeySource."""
    public = issuer_keys.signing_key().as_dict(private=False)
    assert verifier.verify(signed(issuer_keys, {"jwk": public})).subject == "alice"


@pytest.mark.parametrize(
    "extra",
    [
        {"crit": ["exp"], "exp": 1},
        {"crit": ["kid"]},
        {"crit": ["https://example.test/ext"], "https://example.test/ext": True},
        {"crit": []},
        {"b64": False, "crit": ["b64"]},
    ],
)
def test_critical_header_refused(
    issuer_keys: IssuerKeys, verifier: TokenVerifier, extra: dict[str, Any]
) -> None:
    assert refused(verifier, signed(issuer_keys, extra)) == "unsupported critical header"


def test_oversize_token_refused(issuer_keys: IssuerKeys, verifier: TokenVerifier) -> None:
    token = signed(issuer_keys, padding="x" * 8192)
    assert len(token) > 8192
    assert refused(verifier, token) == "token too large"


def test_tampered_payload_refused(issuer: LocalIssuer, verifier: TokenVerifier) -> None:
    token = issuer.issue(subject="alice", department="market", roles=["analyst"])
    header, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    body["department"], body["roles"] = "tax", ["owner"]
    forged = f"{header}.{b64url(json.dumps(body).encode())}.{signature}"
    assert refused(verifier, forged) == "invalid signature"


def test_tampered_signature_refused(issuer: LocalIssuer, verifier: TokenVerifier) -> None:
    token = issuer.issue(subject="alice", department="market", roles=[])
    sig = bytearray(base64.urlsafe_b64decode(token.split(".")[2] + "=="))
    sig[0] ^= 1
    assert refused(verifier, token.rsplit(".", 1)[0] + "." + b64url(bytes(sig))) == (
        "invalid signature"
    )


@pytest.mark.parametrize(
    "token",
    [
        "abc",
        "a.b",
        "a.b.c.d.e",
        "!!.e30.",
        "e30.e30.",  # {} header: no alg
        b64url(b"[1]") + ".e30.",
        b64url(b'{"alg":"Ed25519","alg":"none"}') + ".e30.",  # duplicate member
        b64url(b"not json") + ".e30.",
    ],
)
def test_malformed_token_refused(verifier: TokenVerifier, token: str) -> None:
    assert refused(verifier, token) in {"malformed token", "unsupported algorithm"}


def test_payload_not_an_object_refused(issuer_keys: IssuerKeys, verifier: TokenVerifier) -> None:
    key = issuer_keys.signing_key()
    header = b64url(json.dumps({"alg": "Ed25519", "kid": key.kid, "typ": "at+jwt"}).encode())
    signing_input = f"{header}.{b64url(b'[1,2]')}"
    token = f"{signing_input}.{b64url(ed25519_signer(key)(signing_input.encode()))}"
    assert refused(verifier, token) == "malformed token"


def test_empty_token_is_missing(verifier: TokenVerifier) -> None:
    with pytest.raises(TokenMissing):
        verifier.verify("")


def test_parse_bearer() -> None:
    assert parse_bearer("Bearer abc.def.ghi") == "abc.def.ghi"
    assert parse_bearer("bearer   abc ") == "abc"
    for missing in (None, "", "   "):
        with pytest.raises(TokenMissing):
            parse_bearer(missing)
    for wrong in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer  "):
        with pytest.raises(TokenInvalid, match="expected a bearer token"):
            parse_bearer(wrong)


def test_reasons_never_echo_token_content(issuer_keys: IssuerKeys, verifier: TokenVerifier) -> None:
    marker = "SECRET-MARKER"
    for token in (
        signed(issuer_keys, iss=marker),
        signed(issuer_keys, department=marker),
        signed(issuer_keys, {"kid": marker}),
        signed(issuer_keys, {"alg": marker}),
        marker,
    ):
        with pytest.raises(TokenInvalid) as info:
            verifier.verify(token)
        assert marker not in str(info.value)
        assert info.value.__cause__ is None
        assert info.value.__context__ is None or info.value.__suppress_context__


# --- department and roles -----------------------------------------------------------------


def test_department_and_roles_from_configured_claims_only(issuer_keys: IssuerKeys) -> None:
    keycloak_like = TokenVerifier(
        StaticKeySource(issuer_keys.public_jwks()),
        issuer=ISSUER,
        audience=AUDIENCE,
        department_claim="attributes.department",
        roles_claim="realm_access.roles",
    )
    token = signed(
        issuer_keys,
        department="tax",  # a top-level claim the configuration does not name: ignored
        roles=["admin"],
        attributes={"department": ["Market"]},
        realm_access={"roles": ["Analyst", "offline_access", "default-roles-gov"]},
    )
    p = keycloak_like.verify(token)
    assert p.department == "market"
    assert p.roles == ("analyst", "offline_access")  # "default-roles-gov" is not ours: dropped


def test_roles_as_space_separated_string(issuer_keys: IssuerKeys, verifier: TokenVerifier) -> None:
    assert verifier.verify(signed(issuer_keys, roles="owner  Analyst")).roles == (
        "analyst",
        "owner",
    )


def test_missing_roles_mean_no_roles(issuer_keys: IssuerKeys, verifier: TokenVerifier) -> None:
    assert verifier.verify(signed(issuer_keys, roles=None)).roles == ()


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"department": None}, "missing department claim"),
        ({"department": "market; drop"}, "invalid department claim"),
        ({"department": "市场"}, "invalid department claim"),
        ({"department": ["market", "tax"]}, "invalid department claim"),
        ({"department": {"name": "market"}}, "invalid department claim"),
        ({"roles": {"analyst": True}}, "invalid roles claim"),
        ({"roles": ["analyst", 7]}, "invalid roles claim"),
        ({"roles": [f"r{i}" for i in range(65)]}, "invalid roles claim"),
    ],
)
def test_bad_department_or_roles_claim_refused(
    issuer_keys: IssuerKeys, verifier: TokenVerifier, overrides: dict[str, Any], reason: str
) -> None:
    assert refused(verifier, signed(issuer_keys, **overrides)) == reason


# --- rotation and other algorithms -------------------------------------------------------


def test_tokens_of_old_and_new_key_verify_after_rotation(tmp_path: Path) -> None:
    path = tmp_path / "issuer.jwks.json"
    old_keys = IssuerKeys.generate(path)
    old_token = LocalIssuer(old_keys, issuer=ISSUER, audience=AUDIENCE).issue(
        subject="alice", department="market", roles=[]
    )
    new_keys = old_keys.rotate(path)
    new_token = LocalIssuer(new_keys, issuer=ISSUER, audience=AUDIENCE).issue(
        subject="bob", department="market", roles=[]
    )
    assert json.loads(base64.urlsafe_b64decode(new_token.split(".")[0] + "=="))["kid"] == (
        new_keys.kid
    )
    verifier = TokenVerifier(
        StaticKeySource(IssuerKeys.load(path).public_jwks()), issuer=ISSUER, audience=AUDIENCE
    )
    assert verifier.verify(old_token).subject == "alice"
    assert verifier.verify(new_token).subject == "bob"
    newest = new_keys.rotate(path).rotate(path)  # two more rotations retire the first two keys
    verifier = TokenVerifier(
        StaticKeySource(newest.public_jwks()), issuer=ISSUER, audience=AUDIENCE
    )
    assert refused(verifier, old_token) == "untrusted signing key"


@pytest.fixture(scope="module")
def idp_keys() -> dict[str, Any]:
    return {
        "ES256": ECKey.generate_key("P-256", parameters={"kid": "ec-1"}),
        "RS256": RSAKey.generate_key(2048, parameters={"kid": "rsa-1"}),
    }


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_external_idp_tokens_verify_through_served_jwks(
    idp_keys: dict[str, Any], jwks_server: JwksServer, http_client: httpx.Client, alg: str
) -> None:
    jwks_server.serve(
        {"keys": [{**k.as_dict(private=False), "use": "sig"} for k in idp_keys.values()]}
    )
    source = RemoteJwks(jwks_server.url, http_client=http_client)
    verifier = TokenVerifier(source, issuer=ISSUER, audience=AUDIENCE)
    key = idp_keys[alg]
    token = jwt.encode(
        {"alg": alg, "kid": key.kid, "typ": "at+jwt"}, claims(), key, algorithms=[alg]
    )
    p = verifier.verify(token)
    assert p.department == "market"
    assert p.expires_at > datetime.now(UTC)
    assert jwks_server.hits == 1


def test_alg_not_matching_key_type_refused(
    idp_keys: dict[str, Any], issuer_keys: IssuerKeys
) -> None:
    """An RS256 header naming an EC kid must not be verified with that key (or any other)."""
    jwks = {"keys": [idp_keys["ES256"].as_dict(private=False), *issuer_keys.public_jwks()["keys"]]}  # type: ignore[misc]
    verifier = TokenVerifier(StaticKeySource(jwks), issuer=ISSUER, audience=AUDIENCE)
    token = craft(
        {"alg": "RS256", "kid": "ec-1", "typ": "at+jwt"}, claims(), lambda _: b"\x00" * 256
    )
    assert refused(verifier, token) == "untrusted signing key"


def test_token_without_kid_needs_an_unambiguous_key(
    issuer_keys: IssuerKeys, tmp_path: Path
) -> None:
    key = issuer_keys.signing_key()
    token = craft({"alg": "Ed25519", "typ": "at+jwt"}, claims(), ed25519_signer(key))
    single = TokenVerifier(
        StaticKeySource(issuer_keys.public_jwks()), issuer=ISSUER, audience=AUDIENCE
    )
    assert single.verify(token).subject == "alice"
    two = issuer_keys.rotate(tmp_path / "issuer.jwks.json")
    ambiguous = TokenVerifier(StaticKeySource(two.public_jwks()), issuer=ISSUER, audience=AUDIENCE)
    assert refused(ambiguous, token) == "untrusted signing key"


# --- review: duplicate members, claim collisions, registered-claim edge cases ---------------


def _raw_signed(keys: IssuerKeys, payload: str) -> str:
    """A token whose payload is exactly ``payload`` (JSON text), signed by the current key."""
    key = keys.signing_key()
    header = {"alg": "Ed25519", "kid": key.kid, "typ": "at+jwt"}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(payload.encode())}"
    return f"{signing_input}.{b64url(ed25519_signer(key)(signing_input.encode()))}"


def test_payload_with_duplicate_members_refused(
    issuer_keys: IssuerKeys, verifier: TokenVerifier
) -> None:
    body = json.dumps(claims(department="tax"))
    assert verifier.verify(_raw_signed(issuer_keys, body)).department == "tax"
    # Two departments: a parser taking the first and one taking the last would disagree.
    twice = body[:-1] + ', "department": "market"}'
    assert refused(verifier, _raw_signed(issuer_keys, twice)) == "malformed token"
    nested = json.dumps(claims(realm_access={"roles": ["analyst"]}))
    nested = nested.replace('"roles": ["analyst"]}', '"roles": ["analyst"], "roles": ["owner"]}')
    assert refused(verifier, _raw_signed(issuer_keys, nested)) == "malformed token"


@pytest.mark.parametrize(
    ("department_claim", "roles_claim"),
    [("groups", "groups"), ("realm_access", "realm_access.roles"), ("a.b.c", "a.b")],
)
def test_department_and_roles_claims_must_not_overlap(
    issuer_keys: IssuerKeys, department_claim: str, roles_claim: str
) -> None:
    # One claim for both would let every role name pose as a department.
    with pytest.raises(ValueError, match="different claims"):
        TokenVerifier(
            StaticKeySource(issuer_keys.public_jwks()),
            issuer=ISSUER,
            audience=AUDIENCE,
            department_claim=department_claim,
            roles_claim=roles_claim,
        )


def test_dotted_department_claim_present_twice_refused(issuer_keys: IssuerKeys) -> None:
    dotted = TokenVerifier(
        StaticKeySource(issuer_keys.public_jwks()),
        issuer=ISSUER,
        audience=AUDIENCE,
        department_claim="attributes.department",
    )
    nested_only = signed(issuer_keys, attributes={"department": "market"})
    assert dotted.verify(nested_only).department == "market"
    literal_only = signed(issuer_keys, **{"attributes.department": "tax"})
    assert dotted.verify(literal_only).department == "tax"
    both = signed(
        issuer_keys, attributes={"department": "market"}, **{"attributes.department": "tax"}
    )
    assert refused(dotted, both) == "ambiguous claim"


def test_issuer_compared_exactly(issuer_keys: IssuerKeys, verifier: TokenVerifier) -> None:
    for variant in (ISSUER + "/", ISSUER.upper(), ISSUER.replace("https", "http"), " " + ISSUER):
        assert refused(verifier, signed(issuer_keys, iss=variant)) == "wrong issuer"


def test_audience_list_must_name_us_exactly(
    issuer_keys: IssuerKeys, verifier: TokenVerifier
) -> None:
    assert verifier.verify(signed(issuer_keys, aud=["other", AUDIENCE])).subject == "alice"
    for aud in (["other"], [AUDIENCE.upper()], [AUDIENCE + " "], [[AUDIENCE]], [], ""):
        assert refused(verifier, signed(issuer_keys, aud=aud)) in {
            "wrong audience",
            "invalid claim",
            "missing required claim",
        }


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_future_nbf_and_iat_bounded_by_the_leeway(
    issuer_keys: IssuerKeys, verifier: TokenVerifier, claim: str
) -> None:
    now = int(time.time())
    assert verifier.verify(signed(issuer_keys, **{claim: now + verifier.leeway_s - 5}))
    assert refused(verifier, signed(issuer_keys, **{claim: now + verifier.leeway_s + 60}))
    for bad in (True, "0", None if claim == "nbf" else [now]):
        if bad is not None:
            assert refused(verifier, signed(issuer_keys, **{claim: bad})) != ""


def test_non_finite_times_refused(issuer_keys: IssuerKeys, verifier: TokenVerifier) -> None:
    body = json.dumps(claims())
    for name in ("exp", "nbf", "iat"):
        data = json.loads(body)
        data[name] = "__X__"
        for literal in ("NaN", "Infinity", "-Infinity"):
            text = json.dumps(data).replace('"__X__"', literal)
            refused(verifier, _raw_signed(issuer_keys, text))


def test_rsa_key_pinned_to_rs256_cannot_verify_ps256() -> None:
    rsa = RSAKey.generate_key(2048, parameters={"kid": "r1", "alg": "RS256", "use": "sig"})
    source = StaticKeySource({"keys": [rsa.as_dict(private=False)]})
    both = TokenVerifier(source, issuer=ISSUER, audience=AUDIENCE, algorithms=("RS256", "PS256"))
    header = {"kid": "r1", "typ": "at+jwt"}
    good = jwt.encode({**header, "alg": "RS256"}, claims(), rsa, algorithms=["RS256"])
    assert both.verify(good).subject == "alice"
    unpinned = RSAKey.import_key({k: v for k, v in rsa.as_dict(private=True).items() if k != "alg"})
    pss = jwt.encode({**header, "alg": "PS256"}, claims(), unpinned, algorithms=["PS256"])
    assert refused(both, pss) == "untrusted signing key"


# --- EdDSA (RFC 8037) and Ed25519 (RFC 9864) name the same keys ------------------------------


@pytest.mark.parametrize("jwk_alg", [None, "EdDSA", "Ed25519"])
@pytest.mark.parametrize("token_alg", ["EdDSA", "Ed25519"])
def test_eddsa_and_ed25519_tokens_verify_with_an_ed25519_key(
    jwk_alg: str | None, token_alg: str
) -> None:
    key = OKPKey.generate_key("Ed25519", parameters={"kid": "k1"})
    public = {**key.as_dict(private=False), **({"alg": jwk_alg} if jwk_alg else {})}
    verifier = TokenVerifier(StaticKeySource({"keys": [public]}), issuer=ISSUER, audience=AUDIENCE)
    token = craft({"alg": token_alg, "kid": "k1", "typ": "at+jwt"}, claims(), ed25519_signer(key))
    assert verifier.verify(token).subject == "alice"
    forged = craft(
        {"alg": token_alg, "kid": "k1", "typ": "at+jwt"},
        claims(),
        ed25519_signer(OKPKey.generate_key("Ed25519")),
    )
    assert refused(verifier, forged) == "invalid signature"


def test_eddsa_is_refused_when_not_configured_and_never_matches_other_key_types() -> None:
    key = OKPKey.generate_key("Ed25519", parameters={"kid": "k1"})
    ec = ECKey.generate_key("P-256", parameters={"kid": "k2"})
    jwks = {"keys": [key.as_dict(private=False), ec.as_dict(private=False)]}
    only_ed25519 = TokenVerifier(
        StaticKeySource(jwks), issuer=ISSUER, audience=AUDIENCE, algorithms=["Ed25519"]
    )
    token = craft({"alg": "EdDSA", "kid": "k1", "typ": "at+jwt"}, claims(), ed25519_signer(key))
    assert refused(only_ed25519, token) == "unsupported algorithm"
    eddsa = TokenVerifier(
        StaticKeySource(jwks), issuer=ISSUER, audience=AUDIENCE, algorithms=["EdDSA"]
    )
    assert eddsa.verify(token).subject == "alice"
    on_ec = craft({"alg": "EdDSA", "kid": "k2", "typ": "at+jwt"}, claims(), ed25519_signer(key))
    assert refused(eddsa, on_ec) == "untrusted signing key"
