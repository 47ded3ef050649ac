"""Console sign-in through an external OpenID provider: authorization code + PKCE (Authlib)
against the real test provider on loopback; the access token it returns is verified as an API
bearer token is, and the session carries the identity it proves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from gateway import home
from gateway.api import create_app
from gateway.settings import Settings
from tests.e2e.oidc_provider import OidcProvider

pytestmark = pytest.mark.slow
CONSOLE = "http://127.0.0.1:8000"  # the console's public URL: the redirect URI the IdP sees


@pytest.fixture
def idp() -> Iterator[OidcProvider]:
    with OidcProvider() as provider:
        provider.person("zhang.wei", "market", "data_owner")
        yield provider


@pytest.fixture
def console(tmp_path: Path, idp: OidcProvider) -> Iterator[TestClient]:
    settings = Settings(
        home=tmp_path / "home",
        oidc_issuer=idp.issuer,
        oidc_department_claim="dept",
        oidc_roles_claim="realm_access.roles",
        console_oidc_client_id="insitu-console",
        console_url=CONSOLE,
        console_insecure_http_cookies=True,
    )
    home.init_home(settings)
    with TestClient(
        create_app(settings, run_workers=False), base_url=CONSOLE, follow_redirects=False
    ) as client:
        yield client


def authorize(client: TestClient) -> dict[str, str]:
    """Start at the console; the provider (with a signed-in browser) redirects back."""
    start = client.get("/console/signin/oidc")
    assert start.status_code == 303
    request = parse_qs(urlsplit(start.headers["location"]).query)
    assert request["code_challenge_method"] == ["S256"] and request["code_challenge"][0]
    assert request["redirect_uri"] == [f"{CONSOLE}/console/signin/callback"]
    back = httpx.get(start.headers["location"], follow_redirects=False)
    assert back.status_code == 302
    return {k: v[0] for k, v in parse_qs(urlsplit(back.headers["location"]).query).items()}


def test_signin_through_the_issuer_opens_a_session_with_the_token_identity(
    console: TestClient, idp: OidcProvider
) -> None:
    assert "Sign in with" in console.get("/console/signin").text
    idp.state.browser_user = "zhang.wei"
    answer = authorize(console)
    done = console.get("/console/signin/callback", params=answer)
    assert done.status_code == 200, done.text
    assert "authorization_code" in idp.state.grants
    page = console.get("/console/approvals")
    assert page.status_code == 200
    assert "zhang.wei · market · data_owner" in page.text
    # The code and state were used up: replaying the callback is refused.
    assert console.get("/console/signin/callback", params=answer).status_code == 403


def test_a_callback_in_another_browser_is_refused(
    console: TestClient, idp: OidcProvider, tmp_path: Path
) -> None:
    idp.state.browser_user = "zhang.wei"
    answer = authorize(console)
    other = TestClient(console.app, base_url=CONSOLE, follow_redirects=False)
    refused = other.get("/console/signin/callback", params=answer)
    assert refused.status_code == 403
    assert other.get("/console/approvals").headers.get("location") == "/console/signin"


def test_a_forged_state_is_refused(console: TestClient, idp: OidcProvider) -> None:
    idp.state.browser_user = "zhang.wei"
    answer: dict[str, Any] = authorize(console)
    answer["state"] = "forged-" + answer["state"][7:]
    assert console.get("/console/signin/callback", params=answer).status_code == 403
    assert json.dumps(idp.state.grants).count("authorization_code") == 0  # never exchanged
