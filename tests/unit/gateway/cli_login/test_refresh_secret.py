"""Refreshing a cached sign-in never hands the service account's secret to another flow."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gateway.cli.credentials import Credential, refresh


class TokenEndpoint:
    """A loopback token endpoint that records the Authorization header of every request."""

    def __init__(self) -> None:
        self.authorization: list[str | None] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.authorization.append(self.headers.get("Authorization"))
                body = json.dumps(
                    {"access_token": "new", "token_type": "Bearer", "expires_in": 300}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def endpoint() -> Iterator[TokenEndpoint]:
    server = TokenEndpoint()
    yield server
    server.stop()


def cached(endpoint: TokenEndpoint, grant: str, refresh_token: str | None) -> Credential:
    return Credential(
        issuer="http://127.0.0.1",
        client_id="insitu-cli",
        grant=grant,
        token_endpoint=endpoint.url,
        access_token="old",
        expires_at=int(time.time()) + 10,
        refresh_token=refresh_token,
    )


@pytest.mark.parametrize("grant", ["device_code", "authorization_code"])
def test_a_persons_refresh_never_carries_the_client_secret(
    endpoint: TokenEndpoint, grant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INSITU_CLIENT_SECRET", "service-account-secret")
    renewed = refresh(cached(endpoint, grant, "refresh-1"))
    assert renewed is not None and renewed.access_token == "new"
    assert endpoint.authorization == [None]


def test_a_service_account_renews_with_its_secret(
    endpoint: TokenEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INSITU_CLIENT_SECRET", "service-account-secret")
    renewed = refresh(cached(endpoint, "client_credentials", None))
    assert renewed is not None and renewed.access_token == "new"
    [header] = endpoint.authorization
    assert header is not None and header.startswith("Basic ")
