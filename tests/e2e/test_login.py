"""`insitu login` through Authlib against a real OpenID provider on loopback, then a served
gateway (configured for that provider through discovery) accepts the cached token."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from gateway import home
from gateway.api import create_app
from gateway.demo.server import BackgroundServer
from gateway.settings import Settings
from tests.e2e.oidc_provider import OidcProvider


@pytest.fixture
def idp() -> Iterator[OidcProvider]:
    with OidcProvider() as provider:
        provider.service_account("reporting", "s3cret-value", "stats", "analyst")
        provider.person("zhang.wei", "market", "analyst")
        yield provider


@pytest.fixture
def gateway_url(tmp_path: Path, idp: OidcProvider) -> Iterator[str]:
    settings = Settings(
        home=tmp_path / "home",
        oidc_issuer=idp.issuer,  # no JWKS URL: found through discovery
        oidc_department_claim="dept",
        oidc_roles_claim="realm_access.roles",
        workers=1,
    )
    home.init_home(settings)
    with BackgroundServer(create_app(settings)) as url:
        yield url


def cli_env(tmp_path: Path, url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INSITU_", "XDG_"))}
    env.update(
        {
            "COLUMNS": "200",
            "INSITU_URL": url,
            "INSITU_CONFIG_DIR": str(tmp_path / "config"),
            "HOME": str(tmp_path / "user-home"),
            **extra,
        }
    )
    return env


def insitu(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@contextlib.contextmanager
def running(env: dict[str, str], *args: str) -> Iterator[subprocess.Popen[str]]:
    """The CLI as a process the test talks to; killed (never waited for) if the test fails."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def cache(tmp_path: Path) -> dict[str, dict[str, object]]:
    return json.loads((tmp_path / "config" / "credentials.json").read_text())


@pytest.mark.slow
def test_service_account_signs_in_with_client_credentials(
    tmp_path: Path, idp: OidcProvider, gateway_url: str
) -> None:
    env = cli_env(tmp_path, gateway_url, INSITU_CLIENT_ID="reporting")
    assert insitu(env, "dataset", "list").returncode == 1  # not signed in: 401

    secret_env = {**env, "INSITU_CLIENT_SECRET": "s3cret-value"}
    out = insitu(secret_env, "login", "--client-credentials")  # issuer named by the gateway
    assert out.returncode == 0, out.stderr
    assert idp.issuer in out.stdout

    path = tmp_path / "config" / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    entry = cache(tmp_path)[gateway_url]
    assert entry["issuer"] == idp.issuer and entry["grant"] == "client_credentials"
    assert "s3cret-value" not in path.read_text()  # the secret never lands on disk

    listed = insitu(env, "dataset", "list")  # no secret needed while the token is fresh
    assert listed.returncode == 0, listed.stderr
    assert idp.state.grants == ["client_credentials"]

    bad = insitu({**env, "INSITU_TOKEN": "not.a.token"}, "dataset", "list")
    assert bad.returncode == 1 and "401" in bad.stderr  # INSITU_TOKEN wins over the cache


@pytest.mark.slow
def test_wrong_client_secret_is_refused_by_the_provider(
    tmp_path: Path, idp: OidcProvider, gateway_url: str
) -> None:
    env = cli_env(tmp_path, gateway_url, INSITU_CLIENT_ID="reporting")
    out = insitu({**env, "INSITU_CLIENT_SECRET": "guess"}, "login", "--client-credentials")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "insitu: the identity provider refused: invalid_client"
    ]
    assert not (tmp_path / "config" / "credentials.json").exists()


@pytest.mark.slow
def test_person_signs_in_with_the_device_flow_and_the_token_is_refreshed(
    tmp_path: Path, idp: OidcProvider, gateway_url: str
) -> None:
    env = cli_env(tmp_path, gateway_url)
    idp.state.access_ttl_s = 30  # inside the CLI's 60 s refresh margin: the next use refreshes
    with running(env, "login", "--device", "--issuer", idp.issuer) as login:
        assert login.stderr is not None
        shown = ""
        while (line := login.stderr.readline()) and "enter the code" not in line:
            shown += line
        match = re.search(r"enter the code (\d{4}-\d{4})", line)
        assert match, shown + line + login.stderr.read()
        # The person signs in only after the CLI has polled once and heard "pending".
        device = "urn:ietf:params:oauth:grant-type:device_code"
        while device not in idp.state.grants and login.poll() is None:
            time.sleep(0.05)  # waiting for a condition, not for a duration
        assert login.returncode is None, login.stderr.read()
        idp.approve(match.group(1), "zhang.wei")
        _, stderr = login.communicate(timeout=60)
    assert login.returncode == 0, stderr
    assert idp.state.grants.count("urn:ietf:params:oauth:grant-type:device_code") >= 2
    entry = cache(tmp_path)[gateway_url]
    assert entry["grant"] == "device_code" and entry["refresh_token"]

    assert "refresh_token" not in idp.state.grants

    first = insitu(env, "dataset", "list")
    assert first.returncode == 0, first.stderr
    assert idp.state.grants.count("refresh_token") == 1
    assert cache(tmp_path)[gateway_url]["refresh_token"] != entry["refresh_token"]  # rotated
    idp.state.access_ttl_s = 300
    assert insitu(env, "dataset", "list").returncode == 0  # the 30 s token: refreshed again
    assert insitu(env, "dataset", "list").returncode == 0  # a 300 s token: used as it is
    assert idp.state.grants.count("refresh_token") == 2

    out = insitu(env, "logout")
    assert out.returncode == 0 and "signed out" in out.stdout
    assert gateway_url not in cache(tmp_path)
    assert idp.state.revoked  # the refresh token was revoked at the provider
    assert insitu(env, "dataset", "list").returncode == 1


@pytest.mark.slow
def test_login_refuses_a_gateway_on_its_local_issuer(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", workers=1)
    home.init_home(settings)
    with BackgroundServer(create_app(settings)) as url:
        out = insitu(cli_env(tmp_path, url), "login", "--device")
    assert out.returncode == 1
    assert "insitu token issue" in out.stderr


@pytest.mark.slow
def test_login_refuses_a_provider_whose_metadata_names_another_issuer(
    tmp_path: Path, idp: OidcProvider
) -> None:
    env = cli_env(tmp_path, "http://127.0.0.1:9")
    out = insitu(env, "login", "--device", "--issuer", idp.issuer + "/")  # not exactly equal
    assert out.returncode == 1
    assert "metadata names a different issuer" in out.stderr


@pytest.mark.slow
def test_cache_readable_by_others_is_refused(
    tmp_path: Path, idp: OidcProvider, gateway_url: str
) -> None:
    env = cli_env(tmp_path, gateway_url, INSITU_CLIENT_ID="reporting")
    ok = insitu({**env, "INSITU_CLIENT_SECRET": "s3cret-value"}, "login", "--client-credentials")
    assert ok.returncode == 0, ok.stderr
    (tmp_path / "config" / "credentials.json").chmod(0o644)
    out = insitu(env, "dataset", "list")
    assert out.returncode == 1
    assert "accessible by group or others" in out.stderr


def _login_url(process: subprocess.Popen[str]) -> str:
    assert process.stderr is not None
    shown = ""
    while (line := process.stderr.readline()) and "open " not in line:
        shown += line
    match = re.search(r"open (\S+)", line)
    assert match, shown + line + process.stderr.read()
    return match.group(1)


@pytest.mark.slow
def test_person_signs_in_with_the_authorization_code_flow_and_pkce(
    tmp_path: Path, idp: OidcProvider, gateway_url: str
) -> None:
    env = cli_env(tmp_path, gateway_url)
    idp.state.browser_user = "zhang.wei"
    with running(env, "login", "--browser") as login:
        url = _login_url(login)
        assert url.startswith(f"{idp.issuer}/authorize?")
        redirect = parse_qs(urlsplit(url).query)["redirect_uri"][0]
        # a forged callback from another local process (wrong state) is ignored
        forged = httpx.get(redirect, params={"code": "stolen", "state": "guess"})
        assert forged.status_code == 400
        page = httpx.get(url, follow_redirects=True)  # provider -> 302 -> the CLI's listener
        assert page.status_code == 200 and "Signed in" in page.text
        _, stderr = login.communicate(timeout=60)
    assert login.returncode == 0, stderr
    [request] = idp.state.authorize_requests
    assert request["code_challenge_method"] == "S256" and len(request["code_challenge"]) == 43
    assert idp.state.grants == ["authorization_code"]  # the PKCE verifier matched
    assert cache(tmp_path)[gateway_url]["grant"] == "authorization_code"
    listed = insitu(env, "dataset", "list")
    assert listed.returncode == 0, listed.stderr


@pytest.mark.slow
def test_authorization_code_login_refused_when_the_provider_refuses(
    tmp_path: Path, idp: OidcProvider, gateway_url: str
) -> None:
    env = cli_env(tmp_path, gateway_url)
    with running(env, "login", "--browser") as login:
        url = _login_url(login)
        redirect = parse_qs(urlsplit(url).query)["redirect_uri"][0]
        state = parse_qs(urlsplit(url).query)["state"][0]
        httpx.get(redirect, params={"error": "access_denied", "state": state})
        _, stderr = login.communicate(timeout=60)
    assert login.returncode == 1
    assert stderr.strip().splitlines()[-1] == "insitu: the identity provider refused the sign-in"
    assert not (tmp_path / "config" / "credentials.json").exists()


@pytest.mark.slow
def test_login_asks_for_the_gateways_resource_url_and_the_gateway_accepts_it(
    tmp_path: Path, idp: OidcProvider
) -> None:
    """RFC 9728 names the gateway's URL; the CLI sends it as an RFC 8707 `resource`."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    resource = f"http://127.0.0.1:{port}"
    settings = Settings(
        home=tmp_path / "home",
        oidc_issuer=idp.issuer,
        oidc_audience=resource,  # tokens must be minted for this gateway's URL
        resource_url=resource,
        oidc_department_claim="dept",
        oidc_roles_claim="realm_access.roles",
        workers=1,
    )
    home.init_home(settings)
    with BackgroundServer(create_app(settings), port=port) as url:
        metadata = httpx.get(f"{url}/.well-known/oauth-protected-resource").json()
        assert metadata["resource"] == resource
        env = cli_env(tmp_path, url, INSITU_CLIENT_ID="reporting")
        secret_env = {**env, "INSITU_CLIENT_SECRET": "s3cret-value"}

        plain = insitu(secret_env, "login", "--client-credentials")  # aud "insitu": not ours
        assert plain.returncode == 0, plain.stderr
        assert insitu(env, "dataset", "list").returncode == 1

        refused = insitu(secret_env, "login", "--client-credentials", "--resource", "insitu")
        assert refused.returncode == 1  # the provider's invalid_target

        out = insitu(secret_env, "login", "--client-credentials", "--resource", "gateway")
        assert out.returncode == 0, out.stderr
        assert idp.state.resources == ["insitu", resource]
        listed = insitu(env, "dataset", "list")
        assert listed.returncode == 0, listed.stderr
