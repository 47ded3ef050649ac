"""A job-path call end to end with an access token from node `oidc-provider`, a certified
OpenID provider: client credentials, an RFC 8707 resource indicator taken from the gateway's
RFC 9728 metadata, an RFC 9068 `at+jwt` signed with an Ed25519 key that the provider names
`EdDSA` (RFC 8037). Slow; skips without node or the package outside CI (`npm ci` here)."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway import home
from gateway.api import create_app
from gateway.demo.server import BackgroundServer
from gateway.settings import Settings
from tests.e2e.test_login import cli_env, insitu
from tests.interop._tools import missing

HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def provider(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(issuer, resource): the provider's URL and the gateway URL it mints tokens for."""
    node = shutil.which("node")
    if node is None:
        missing("node is not installed")
    if not (HERE / "node_modules" / "oidc-provider").is_dir():
        missing("the oidc-provider npm package is not installed (npm ci in tests/interop)")
    port, resource = _free_port(), f"http://127.0.0.1:{_free_port()}"
    process = subprocess.Popen(
        [node, str(HERE / "oidc" / "provider.mjs"), str(port), resource],
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "ready <issuer>" once listening (EOF if it died)
        if not line.startswith("ready "):
            pytest.fail("oidc-provider did not start")
        yield line.split()[1], resource
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


@pytest.mark.slow
def test_an_eddsa_at_jwt_from_oidc_provider_for_the_gateways_resource_is_accepted(
    tmp_path: Path, provider: tuple[str, str]
) -> None:
    issuer, resource = provider
    settings = Settings(
        home=tmp_path / "home",
        oidc_issuer=issuer,  # found through discovery
        oidc_audience=resource,
        resource_url=resource,
        workers=1,
    )
    home.init_home(settings)
    port = int(resource.rsplit(":", 1)[1])
    with BackgroundServer(create_app(settings), port=port) as url:
        metadata = httpx.get(f"{url}/.well-known/oauth-protected-resource").json()
        assert metadata == {
            "resource": resource,
            "authorization_servers": [issuer],
            "bearer_methods_supported": ["header"],
        }
        env = cli_env(tmp_path, url, INSITU_CLIENT_ID="reporting")
        secret = {**env, "INSITU_CLIENT_SECRET": "s3cret-value"}
        refused = insitu(secret, "login", "--client-credentials", "--resource", "insitu")
        assert refused.returncode == 1  # the provider's invalid_target: not an absolute URI
        out = insitu(secret, "login", "--client-credentials", "--resource", "gateway")
        assert out.returncode == 0, out.stderr
        cached = json.loads((tmp_path / "config" / "credentials.json").read_text())[url]
        header = json.loads(base64.urlsafe_b64decode(cached["access_token"].split(".")[0] + "=="))
        assert header["alg"] == "EdDSA" and header["typ"] == "at+jwt"
        assert cached["resource"] == resource
        listed = insitu(env, "dataset", "list")
        assert listed.returncode == 0, listed.stderr
