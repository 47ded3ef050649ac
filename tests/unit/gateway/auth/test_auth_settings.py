"""Identity settings fail at start-up, as one clear setting error, never at the first request."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gateway.settings import Settings


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"token_type": ""}, "token_type may be empty only when token_type_claim is set"),
        ({"token_type": " , "}, "token_type may be empty only when token_type_claim is set"),
        ({"token_type": "JWT"}, "ID tokens carry"),
        ({"token_type": "at+jwt,application/JWT"}, "ID tokens carry"),
        ({"token_type_claim": "typ"}, "claim=value"),
        ({"token_algorithms": "HS256"}, "not public-key JWS algorithms"),
        ({"token_algorithms": "ES256,none"}, "not public-key JWS algorithms"),
        ({"token_algorithms": "Ed448"}, "not public-key JWS algorithms"),
        ({"resource_url": "http://gateway.example.gov"}, "https"),
        ({"resource_url": "https://gateway.example.gov/#x"}, "fragment"),
        ({"audit_witness_urls": "http://witness.example"}, "https"),
        ({"audit_witnesses": "w+00000000+AAAA"}, "malformed witness vkey"),
        ({"token_algorithms": " "}, "not public-key JWS algorithms"),
        ({"jwks_refresh_interval_s": 600}, "jwks_refresh_interval_s <= jwks_cache_ttl_s"),
        ({"jwks_max_stale_s": 10}, "jwks_refresh_interval_s <= jwks_cache_ttl_s"),
        ({"oidc_issuer": "http://idp.example.gov/realms/gov"}, "https"),
        ({"oidc_issuer": "https://x", "oidc_jwks_url": "http://x/certs"}, "https"),
        ({"oidc_roles_claim": "department"}, "must be different claims"),
        (
            {"oidc_department_claim": "realm_access", "oidc_roles_claim": "realm_access.roles"},
            "must be different claims",
        ),
    ],
)
def test_bad_identity_settings_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**values)


def test_keycloak_style_type_claim_allows_an_empty_typ_list() -> None:
    settings = Settings(token_type="", token_type_claim="typ=Bearer")
    assert settings.token_type_claim == "typ=Bearer"


def test_algorithm_list_is_parsed() -> None:
    assert Settings(token_algorithms=" RS256, PS256 ").token_algorithm_list == ("RS256", "PS256")


def test_eddsa_is_accepted_at_start_up_and_by_default() -> None:
    """RFC 8037's name for Ed25519 JWS, used by most providers (issue 15)."""
    assert Settings(token_algorithms="EdDSA").token_algorithm_list == ("EdDSA",)
    assert {"EdDSA", "Ed25519"} <= set(Settings().token_algorithm_list)


def test_loopback_http_issuer_is_allowed() -> None:
    assert Settings(oidc_issuer="http://127.0.0.1:8080/realms/gov").oidc_issuer
