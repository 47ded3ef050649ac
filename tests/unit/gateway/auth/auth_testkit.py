"""Helpers for the auth tests: a real JWKS served on loopback, and hand-made tokens.

Hand-made tokens let a test put anything in the header (``alg: none``, ``jwk``, ``crit`` …) that a
well-behaved library would refuse to produce.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from joserfc.jwk import OKPKey

ISSUER = "https://idp.test/realms/gov"
AUDIENCE = "insitu"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def craft(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A compact JWS with exactly this header and payload, signed by ``sign``."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


def ed25519_signer(key: OKPKey) -> Callable[[bytes], bytes]:
    private = key.private_key
    assert private is not None
    return private.sign  # type: ignore[union-attr]


def hmac_signer(secret: bytes) -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid access-token claims for ISSUER/AUDIENCE; ``key=None`` removes a claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": "t-1",
        "department": "market",
        "roles": ["analyst"],
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


class JwksServer:
    """A JWKS endpoint on 127.0.0.1 whose answers the test controls; counts requests."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b'{"keys": []}'
        self.hits = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server.hits += 1
                    status, body = server.status, server.body
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/jwks.json"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        self._running = True

    def serve(self, jwks: dict[str, Any]) -> None:
        self.serve_raw(json.dumps(jwks).encode())

    def serve_raw(self, body: bytes, status: int = 200) -> None:
        with self._lock:
            self.status, self.body = status, body

    def stop(self) -> None:
        """Take the endpoint down: connections are refused from now on."""
        if self._running:
            self._running = False
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RoutesServer:
    """An HTTP server on 127.0.0.1 answering GET by path from a table the test controls.

    ``routes[path] = (status, body)``; unknown paths answer 404. ``hits`` counts per path.
    """

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes]] = {}
        self.hits: dict[str, int] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                with server._lock:
                    server.hits[path] = server.hits.get(path, 0) + 1
                    status, body = server.routes.get(path, (404, b"{}"))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    def json(self, path: str, document: object, status: int = 200) -> None:
        with self._lock:
            self.routes[path] = (status, json.dumps(document).encode())

    def raw(self, path: str, body: bytes, status: int = 200) -> None:
        with self._lock:
            self.routes[path] = (status, body)

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
