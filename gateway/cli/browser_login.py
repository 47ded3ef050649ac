"""`insitu login --browser`: the authorization-code flow with PKCE (RFC 7636) for people.

The CLI listens on a loopback port for the redirect (RFC 8252 §7.3: ``http://127.0.0.1:<port>``),
shows the provider's authorization URL, and exchanges the code with its S256 code verifier
through Authlib. A redirect whose ``state`` does not match is answered and ignored (a forged
callback from another local process cannot sign the CLI in as someone else); the provider's
``error`` ends the login. Nothing from the redirect is echoed into the page.
"""

from __future__ import annotations

import hmac
import queue
import secrets
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import OAuth2Client
from httpx2 import HTTPError as OAuthTransportError

from gateway.cli.credentials import (
    Credential,
    credential_from_token,
    extra_params,
    provider_error,
    provider_metadata,
    token_endpoint,
)
from gateway.cli.output import CliError

CALLBACK_PATH = "/callback"
PAGE = b"<!doctype html><title>insitu</title><p>%s You can close this window.</p>"


def _listener(state: str, results: queue.Queue[dict[str, str]]) -> ThreadingHTTPServer:
    class Callback(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            matches = hmac.compare_digest(query.get("state", ""), state)
            if parts.path != CALLBACK_PATH or not matches:
                self._answer(400, b"This is not the sign-in you started.")
                return
            self._answer(200, b"Signed in." if "code" in query else b"Sign-in failed.")
            results.put(query)

        def _answer(self, status: int, message: bytes) -> None:
            body = PAGE % message
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Callback)
    server.daemon_threads = True
    return server


def browser_login(
    issuer: str,
    client_id: str,
    *,
    scope: str | None,
    audience: str | None,
    show: Callable[[str], None],
    resource: str | None = None,
    timeout_s: float = 300.0,
) -> Credential:
    metadata = provider_metadata(issuer)
    endpoint = token_endpoint(metadata)
    authorize = metadata.get("authorization_endpoint")
    if not isinstance(authorize, str):
        raise CliError("the identity provider publishes no authorization endpoint", 1)
    state = secrets.token_urlsafe(24)
    verifier = secrets.token_urlsafe(64)  # 86 characters: inside RFC 7636's 43-128
    results: queue.Queue[dict[str, str]] = queue.Queue()
    server = _listener(state, results)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    redirect_uri = f"http://127.0.0.1:{server.server_address[1]}{CALLBACK_PATH}"
    try:
        with OAuth2Client(
            client_id=client_id,
            token_endpoint_auth_method="none",  # noqa: S106 - a public client, PKCE instead
            scope=scope or "openid",
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=30.0,
            follow_redirects=False,
        ) as oauth:
            url, _ = oauth.create_authorization_url(
                authorize,
                state=state,
                code_verifier=verifier,
                **extra_params(audience, resource),
            )
            show(url)
            try:
                answer = results.get(timeout=timeout_s)
            except queue.Empty:
                raise CliError("no sign-in arrived in time", 1) from None
            if "code" not in answer:
                raise CliError("the identity provider refused the sign-in", 1)
            try:
                token = oauth.fetch_token(
                    endpoint,
                    grant_type="authorization_code",
                    code=answer["code"],
                    code_verifier=verifier,
                    redirect_uri=redirect_uri,
                    **extra_params(None, resource),
                )
            except (OAuthError, OAuthTransportError, ValueError) as exc:
                raise provider_error(exc) from None
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    return credential_from_token(
        token,
        issuer=issuer,
        client_id=client_id,
        grant="authorization_code",
        metadata=metadata,
        scope=scope,
        audience=audience,
        resource=resource,
    )
