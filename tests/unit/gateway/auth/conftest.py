from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.auth import IssuerKeys, LocalIssuer, StaticKeySource, TokenVerifier
from tests.unit.gateway.auth.auth_testkit import AUDIENCE, ISSUER, JwksServer


@pytest.fixture
def issuer_keys(tmp_path: Path) -> IssuerKeys:
    return IssuerKeys.generate(tmp_path / "issuer.jwks.json")


@pytest.fixture
def issuer(issuer_keys: IssuerKeys) -> LocalIssuer:
    return LocalIssuer(issuer_keys, issuer=ISSUER, audience=AUDIENCE)


@pytest.fixture
def verifier(issuer_keys: IssuerKeys) -> TokenVerifier:
    return TokenVerifier(
        StaticKeySource(issuer_keys.public_jwks()), issuer=ISSUER, audience=AUDIENCE
    )


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.stop()


@pytest.fixture
def http_client() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client
