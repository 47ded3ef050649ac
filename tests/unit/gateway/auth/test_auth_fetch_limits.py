"""Discovery and JWKS fetches stay bounded: no redirect, no slow drip, no inflated body."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from joserfc.jwk import ECKey

from gateway.auth import KeySourceUnavailable, RemoteJwks
from gateway.auth.discovery import DiscoveryError, fetch_json

KEY = ECKey.generate_key("P-256", parameters={"kid": "k1", "use": "sig"}, private=False)
JWKS = json.dumps({"keys": [KEY.as_dict(private=False)]}).encode()


class Hostile:
    """A loopback server whose answers redirect, drip or inflate."""

    def __init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", f"{owner.base}/certs")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path == "/certs":
                    self._send(JWKS)
                    return
                if self.path == "/gzip":
                    self._send(gzip.compress(JWKS), {"Content-Encoding": "gzip"})
                    return
                if self.path == "/bomb":
                    body = gzip.compress(b'{"keys": [' + b" " * (16 * 1024 * 1024) + b"]}")
                    self._send(body, {"Content-Encoding": "gzip"})
                    return
                # /drip: a valid JWKS, one small piece at a time, each read well inside a timeout
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(JWKS)))
                self.end_headers()
                for start in range(0, len(JWKS), 8):
                    self.wfile.write(JWKS[start : start + 8])
                    self.wfile.flush()
                    time.sleep(0.1)

            def _send(self, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    server = Hostile()
    yield server
    server.stop()


def test_redirects_are_not_followed_even_by_a_following_client(hostile: Hostile) -> None:
    with httpx.Client(follow_redirects=True) as client:
        assert fetch_json(client, f"{hostile.base}/certs") == json.loads(JWKS)
        with pytest.raises(DiscoveryError, match="status 302"):
            fetch_json(client, f"{hostile.base}/redirect")
    with RemoteJwks(f"{hostile.base}/redirect") as source, pytest.raises(KeySourceUnavailable):
        source.get_key_set("k1")


def test_a_slow_drip_is_cut_off_by_the_overall_time_limit(hostile: Hostile) -> None:
    # Each piece arrives within 0.1 s, far inside the read timeout; the whole takes seconds.
    assert len(JWKS) // 8 * 0.1 > 1.0
    with httpx.Client() as client, pytest.raises(DiscoveryError, match="too slow"):
        fetch_json(client, f"{hostile.base}/drip", timeout_s=0.5)


def test_compressed_bodies_are_refused_before_inflating(hostile: Hostile) -> None:
    with httpx.Client() as client:
        for path in ("/gzip", "/bomb"):
            with pytest.raises(DiscoveryError, match="compressed response refused"):
                fetch_json(client, f"{hostile.base}{path}")


@pytest.mark.parametrize(
    "body",
    [
        b'{"issuer": "https://evil.test", "issuer": "https://idp.test", "jwks_uri": "x"}',
        b'{"keys": [{"kty": "EC", "kty": "RSA", "crv": "P-256", "x": "AA", "y": "AA"}]}',
    ],
)
def test_documents_with_duplicate_members_are_refused(body: bytes) -> None:
    server = DocumentServer(body)
    try:
        with httpx.Client() as client, pytest.raises(DiscoveryError, match="not JSON"):
            fetch_json(client, server.url)
    finally:
        server.stop()


class DocumentServer:
    """Serves one fixed body at every path."""

    def __init__(self, body: bytes) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/doc"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
