"""A gateway configured for an external OIDC provider whose JWKS is served on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey

from gateway import home
from gateway.api import create_app
from gateway.settings import Settings

ISSUER = "https://idp.example.gov/realms/departments"


@pytest.fixture
def idp() -> Iterator[tuple[str, ECKey]]:
    key = ECKey.generate_key("P-256", parameters={"kid": "idp-1", "use": "sig"})
    jwks = json.dumps({"keys": [key.as_dict(private=False)]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(jwks)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/certs", key
    server.shutdown()
    server.server_close()


def idp_token(key: ECKey, **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": "insitu",
        "sub": "zhang.wei",
        "iat": now,
        "exp": now + 300,
        "realm_access": {"roles": ["analyst"]},
        "dept": "stats",
        **overrides,
    }
    header = {"alg": "ES256", "kid": "idp-1", "typ": "at+jwt"}
    return jwt.encode(header, claims, key, algorithms=["ES256"])


def test_gateway_accepts_tokens_of_the_configured_idp_only(
    tmp_path: Path, idp: tuple[str, ECKey]
) -> None:
    jwks_url, key = idp
    settings = Settings(
        home=tmp_path,
        oidc_issuer=ISSUER,
        oidc_jwks_url=jwks_url,
        oidc_department_claim="dept",
        oidc_roles_claim="realm_access.roles",
    )
    home.init_home(settings)
    with TestClient(create_app(settings, run_workers=False)) as client:
        ok = client.get("/v1/datasets", headers={"Authorization": f"Bearer {idp_token(key)}"})
        assert ok.status_code == 200, ok.text
        wrong_iss = idp_token(key, iss="https://evil.example")
        refused = client.get("/v1/datasets", headers={"Authorization": f"Bearer {wrong_iss}"})
        assert refused.status_code == 401
        # no local issuer in this configuration
        assert client.get("/.well-known/jwks.json").status_code == 404


def test_gateway_finds_the_jwks_through_discovery_and_names_its_provider(
    tmp_path: Path,
) -> None:
    from tests.e2e.oidc_provider import OidcProvider

    with OidcProvider() as provider:
        provider.person("li.na", "tax", "analyst")
        settings = Settings(
            home=tmp_path,
            oidc_issuer=provider.issuer,  # INSITU_OIDC_JWKS_URL unset: discovery
            oidc_department_claim="dept",
            oidc_roles_claim="realm_access.roles",
        )
        home.init_home(settings)
        token = provider.access_token(provider.state.people["li.na"])
        with TestClient(create_app(settings, run_workers=False)) as client:
            ok = client.get("/v1/datasets", headers={"Authorization": f"Bearer {token}"})
            assert ok.status_code == 200, ok.text
            metadata = client.get("/.well-known/oauth-protected-resource").json()
            assert metadata["authorization_servers"] == [provider.issuer]
            assert metadata["resource"] == "http://testserver"  # no INSITU_RESOURCE_URL: as asked
