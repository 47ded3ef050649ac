"""A small but real OpenID provider on loopback for the end-to-end identity tests.

It publishes discovery metadata and a JWKS, and runs a token endpoint (client credentials,
authorization code with PKCE S256, device code, refresh token), an authorization endpoint (as
if a person were signed in to it in the browser), a device authorization endpoint (RFC 8628)
and a revocation endpoint. Access tokens are RFC 9068 ``at+jwt`` signed ES256 with a real key.
A test plays the person's browser: `approve(user_code)`, or ``state.browser_user``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import ECKey

AUDIENCE = "insitu"


@dataclass
class Account:
    subject: str
    department: str
    roles: list[str]
    secret: str | None = None  # confidential client (service account) when set


@dataclass
class DeviceGrant:
    client_id: str
    user_code: str
    approved_as: Account | None = None


@dataclass
class Provider:
    """State the test reads and changes; the HTTP handler below serves it."""

    accounts: dict[str, Account] = field(default_factory=dict)  # by client id (service accounts)
    people: dict[str, Account] = field(default_factory=dict)  # by user name
    access_ttl_s: int = 300
    device_interval_s: int = 1
    devices: dict[str, DeviceGrant] = field(default_factory=dict)
    refresh_tokens: dict[str, tuple[str, Account]] = field(default_factory=dict)
    revoked: list[str] = field(default_factory=list)
    grants: list[str] = field(default_factory=list)  # grant_type of every token request
    resources: list[str] = field(default_factory=list)  # RFC 8707 `resource` of token requests
    browser_user: str | None = None  # who is signed in to the provider in "the browser"
    codes: dict[str, tuple[Account, str, str, str]] = field(default_factory=dict)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class OidcProvider:
    """`with OidcProvider() as idp:` serves on 127.0.0.1 until the block ends."""

    def __init__(self) -> None:
        self.key = ECKey.generate_key("P-256", parameters={"kid": "idp-es256", "use": "sig"})
        self.state = Provider()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/realms/gov/authorize?"):
                    query = {k: v[0] for k, v in parse_qs(self.path.split("?", 1)[1]).items()}
                    location = provider.authorize(query)
                    self.send_response(302 if location else 400)
                    self.send_header("Location", location or "")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path == "/realms/gov/.well-known/openid-configuration":
                    self._json(200, provider.metadata())
                elif self.path == "/realms/gov/certs":
                    self._json(200, {"keys": [provider.key.as_dict(private=False)]})
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                routes = {
                    "/realms/gov/token": provider.token,
                    "/realms/gov/device": provider.device,
                    "/realms/gov/revoke": provider.revoke,
                }
                handler = routes.get(self.path)
                if handler is None:
                    self._json(404, {"error": "not_found"})
                    return
                status, body = handler(form, self.headers.get("Authorization"))
                self._json(status, body)

            def _json(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self.issuer = f"{self.base}/realms/gov"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> OidcProvider:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # --- what the test does -------------------------------------------------------------

    def service_account(self, client_id: str, secret: str, department: str, *roles: str) -> None:
        self.state.accounts[client_id] = Account(
            f"service-account-{client_id}", department, list(roles), secret
        )

    def person(self, name: str, department: str, *roles: str) -> None:
        self.state.people[name] = Account(name, department, list(roles))

    def approve(self, user_code: str, name: str) -> None:
        """What the person does in the browser: enter the code and sign in."""
        with self.state.lock:
            for grant in self.state.devices.values():
                if grant.user_code == user_code:
                    grant.approved_as = self.state.people[name]
                    return
        raise KeyError(user_code)

    def access_token(self, account: Account, **overrides: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": account.subject,
            "iat": now,
            "exp": now + self.state.access_ttl_s,
            "jti": secrets.token_urlsafe(8),
            "client_id": "insitu-cli",
            "dept": account.department,
            "realm_access": {"roles": account.roles},
            **overrides,
        }
        header = {"alg": "ES256", "kid": self.key.kid, "typ": "at+jwt"}
        return jwt.encode(header, claims, self.key, algorithms=["ES256"])

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{self.issuer}/certs",
            "token_endpoint": f"{self.issuer}/token",
            "authorization_endpoint": f"{self.issuer}/authorize",
            "code_challenge_methods_supported": ["S256"],
            "device_authorization_endpoint": f"{self.issuer}/device",
            "revocation_endpoint": f"{self.issuer}/revoke",
            "grant_types_supported": [
                "client_credentials",
                "refresh_token",
                "urn:ietf:params:oauth:grant-type:device_code",
            ],
        }

    # --- endpoints ------------------------------------------------------------------------

    def _client(self, form: dict[str, str], authorization: str | None) -> tuple[str, str | None]:
        if authorization and authorization.startswith("Basic "):
            raw = base64.b64decode(authorization.removeprefix("Basic ")).decode()
            client_id, _, secret = raw.partition(":")
            return client_id, secret
        return form.get("client_id", ""), None

    def _issue(
        self, account: Account, *, refresh: bool, resource: str | None = None
    ) -> dict[str, Any]:
        overrides = {"aud": resource} if resource else {}
        body: dict[str, Any] = {
            "access_token": self.access_token(account, **overrides),
            "token_type": "Bearer",
            "expires_in": self.state.access_ttl_s,
        }
        if refresh:
            refresh_token = secrets.token_urlsafe(16)
            self.state.refresh_tokens[refresh_token] = (account.subject, account)
            body["refresh_token"] = refresh_token
        return body

    def token(self, form: dict[str, str], authorization: str | None) -> tuple[int, object]:
        grant_type = form.get("grant_type", "")
        client_id, secret = self._client(form, authorization)
        with self.state.lock:
            self.state.grants.append(grant_type)
            resource = form.get("resource")
            if resource is not None:
                self.state.resources.append(resource)
                parts = urlsplit(resource)
                if not parts.scheme or not parts.netloc or parts.fragment:
                    return 400, {"error": "invalid_target"}  # RFC 8707: an absolute URI
            if grant_type == "client_credentials":
                account = self.state.accounts.get(client_id)
                if account is None or secret is None or secret != account.secret:
                    return 401, {"error": "invalid_client"}
                return 200, self._issue(account, refresh=False, resource=resource)
            if grant_type == "urn:ietf:params:oauth:grant-type:device_code":
                grant = self.state.devices.get(form.get("device_code", ""))
                if grant is None or grant.client_id != client_id:
                    return 400, {"error": "invalid_grant"}
                if grant.approved_as is None:
                    return 400, {"error": "authorization_pending"}
                del self.state.devices[form["device_code"]]
                return 200, self._issue(grant.approved_as, refresh=True)
            if grant_type == "authorization_code":
                entry = self.state.codes.pop(form.get("code", ""), None)
                if entry is None:
                    return 400, {"error": "invalid_grant"}
                account, challenge, redirect_uri, code_client = entry
                verifier = form.get("code_verifier", "")
                computed = (
                    base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
                    .rstrip(b"=")
                    .decode()
                )
                if (
                    code_client != client_id
                    or redirect_uri != form.get("redirect_uri")
                    or not 43 <= len(verifier) <= 128
                    or computed != challenge
                ):
                    return 400, {"error": "invalid_grant"}
                return 200, self._issue(account, refresh=True)
            if grant_type == "refresh_token":
                entry = self.state.refresh_tokens.pop(form.get("refresh_token", ""), None)
                if entry is None:
                    return 400, {"error": "invalid_grant"}
                return 200, self._issue(entry[1], refresh=True)
            return 400, {"error": "unsupported_grant_type"}

    def authorize(self, query: dict[str, str]) -> str | None:
        """The authorization endpoint with a signed-in browser: redirect back with a code."""
        with self.state.lock:
            self.state.authorize_requests.append(query)
            redirect_uri = query.get("redirect_uri", "")
            if (
                query.get("response_type") != "code"
                or query.get("code_challenge_method") != "S256"
                or not query.get("code_challenge")
                or not redirect_uri.startswith("http://127.0.0.1:")
                or self.state.browser_user is None
            ):
                return None
            code = secrets.token_urlsafe(16)
            self.state.codes[code] = (
                self.state.people[self.state.browser_user],
                query["code_challenge"],
                redirect_uri,
                query.get("client_id", ""),
            )
        return f"{redirect_uri}?{urlencode({'code': code, 'state': query.get('state', '')})}"

    def device(self, form: dict[str, str], authorization: str | None) -> tuple[int, object]:
        client_id = form.get("client_id", "")
        device_code = secrets.token_urlsafe(16)
        user_code = f"{secrets.randbelow(10**4):04d}-{secrets.randbelow(10**4):04d}"
        with self.state.lock:
            self.state.devices[device_code] = DeviceGrant(client_id, user_code)
        return 200, {
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": f"{self.issuer}/device/verify",
            "verification_uri_complete": f"{self.issuer}/device/verify?user_code={user_code}",
            "expires_in": 60,
            "interval": self.state.device_interval_s,
        }

    def revoke(self, form: dict[str, str], authorization: str | None) -> tuple[int, object]:
        with self.state.lock:
            self.state.revoked.append(form.get("token", ""))
            self.state.refresh_tokens.pop(form.get("token", ""), None)
        return 200, {}
