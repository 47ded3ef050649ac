"""Signing in to the console, and out.

- Embedded issuer: `insitu console-link --subject S --role R [--department D]` prints a link
  to `/console/signin/link?token=…`. Opening it shows a button; pressing it POSTs the token
  (so a link scanner that fetches URLs cannot use it up) and, if the link is unused and
  unexpired, opens a session. A used, expired or unknown link is refused and counted as a
  failed authentication.
- External issuer: authorization code + PKCE (S256) through Authlib. The `state` is stored
  hashed with the code verifier and a hash of a random value kept in a `SameSite=Lax` cookie
  of the browser that began, so a callback is accepted once, and only in that browser. The
  access token the issuer returns is verified exactly as an API bearer token is
  (`gw.tokens.verify`): the session holds the identity it proves.

Every session opened is audited as `console.signed_in` with the way it was proven.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

import httpx
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import OAuth2Client
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import RedirectResponse
from httpx2 import HTTPError as OAuthTransportError

from gateway.auth.discovery import DiscoveryError, discover
from gateway.auth.errors import AuthError
from gateway.console import sessions
from gateway.console.web import (
    OIDC_COOKIE,
    PRE_COOKIE,
    Caller,
    ConsoleRoute,
    NeedSignIn,
    call,
    caller,
    clear_cookie,
    gateway,
    page,
    posted,
    read_form,
    session_cookie,
    set_cookie,
)
from gateway.context import Gateway

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)
PENDING_TTL_S = 600
Token = Annotated[str, Query(max_length=128)]


def base_url(gw: Gateway, request: Request) -> str:
    if gw.settings.console_url:
        return gw.settings.console_url.rstrip("/")
    return str(request.base_url).rstrip("/")


def _open(gw: Gateway, who: sessions.Identity, source: str) -> str:
    with gw.db.begin() as conn:
        secret, session = sessions.open_session(
            conn, who, source=source, ttl_s=gw.settings.console_session_ttl_s
        )
        gw.audit.record(
            conn,
            type="console.signed_in",
            principal=session.principal(),
            action="sign_in",
            target="console",
            allowed=True,
            details={"source": source, "expires_at": session.expires_at.isoformat()},
        )
    return secret


def _signed_in(gw: Gateway, request: Request, secret: str) -> Response:
    # A page, not a redirect: after an issuer's cross-site redirect a browser would not send a
    # SameSite=Strict cookie on the next hop; a same-site refresh from this page does.
    response = page(request, None, "signed_in.html")
    set_cookie(response, gw, session_cookie(gw), secret, max_age=gw.settings.console_session_ttl_s)
    clear_cookie(response, gw, OIDC_COOKIE)
    return response


def _refused(request: Request, detail: str, status: int = 403) -> Response:
    return page(request, None, "error.html", status=status, title="Sign-in refused", detail=detail)


@router.get("/signin")
def signin_page(request: Request) -> Response:
    gw = gateway(request)
    external = gw.settings.oidc_issuer is not None
    return page(
        request,
        None,
        "signin.html",
        external=external,
        issuer=gw.settings.oidc_issuer,
        browser_signin=external and gw.settings.console_oidc_client_id is not None,
    )


@router.get("/signin/link")
def link_page(request: Request, token: Token = "") -> Response:
    gw = gateway(request)
    pre = secrets.token_urlsafe(24)
    response = page(request, None, "link.html", token=token, pre=pre)
    set_cookie(response, gw, PRE_COOKIE, pre, max_age=PENDING_TTL_S)
    return response


@router.post("/signin/link")
async def redeem_link(request: Request) -> Response:
    gw = gateway(request)
    form = await read_form(request)
    pre = request.cookies.get(PRE_COOKIE, "")
    if not pre or not hmac.compare_digest(form.get("pre"), pre):
        return _refused(request, "the sign-in form did not come from this browser; open the link")
    host = request.client.host if request.client else None

    def redeem() -> sessions.Identity | None:
        with gw.db.begin() as conn:
            return sessions.redeem_link(conn, form.get("token")[:128])

    who = await call(redeem)
    if who is None:
        await call(gw.failed_auth.note, "console link refused", host)
        return _refused(
            request, "this sign-in link is unknown, expired or used already; ask for a new one"
        )
    secret = await call(_open, gw, who, sessions.LINK)
    return _signed_in(gw, request, secret)


def _client(gw: Gateway, redirect_uri: str) -> OAuth2Client:
    return OAuth2Client(
        client_id=gw.settings.console_oidc_client_id,
        client_secret=gw.settings.console_oidc_client_secret,
        token_endpoint_auth_method=(
            "client_secret_basic" if gw.settings.console_oidc_client_secret else "none"
        ),
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        timeout=10,
    )


def _metadata(gw: Gateway) -> dict[str, str]:
    issuer = gw.settings.oidc_issuer
    assert issuer is not None
    with httpx.Client(follow_redirects=False) as http:
        found = discover(http, issuer)
    endpoints = {k: found.get(k) for k in ("authorization_endpoint", "token_endpoint")}
    if not all(isinstance(v, str) for v in endpoints.values()):
        raise DiscoveryError("the issuer publishes no authorization or token endpoint")
    return {k: str(v) for k, v in endpoints.items()}


@router.get("/signin/oidc")
def begin_oidc(request: Request) -> Response:
    gw = gateway(request)
    if gw.settings.oidc_issuer is None or gw.settings.console_oidc_client_id is None:
        return _refused(request, "this gateway has no browser sign-in through an issuer", 404)
    try:
        endpoints = _metadata(gw)
    except DiscoveryError:
        return _refused(request, "the identity provider cannot be reached", 503)
    state, verifier, browser = (secrets.token_urlsafe(32) for _ in range(3))
    verifier = verifier + secrets.token_urlsafe(16)  # 64 characters (RFC 7636: 43-128)
    with gw.db.begin() as conn:
        sessions.begin_oidc(
            conn, state=state, verifier=verifier, browser=browser, ttl_s=PENDING_TTL_S
        )
    with _client(gw, f"{base_url(gw, request)}/console/signin/callback") as client:
        url, _ = client.create_authorization_url(
            endpoints["authorization_endpoint"], state=state, code_verifier=verifier, scope="openid"
        )
    response = RedirectResponse(url, status_code=303)
    # Lax: the issuer's redirect back is a cross-site top-level navigation.
    set_cookie(response, gw, OIDC_COOKIE, browser, max_age=PENDING_TTL_S, lax=True)
    return response


@router.get("/signin/callback")
def oidc_callback(
    request: Request,
    code: Token = "",
    state: Token = "",
    error: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    gw = gateway(request)
    host = request.client.host if request.client else None
    browser = request.cookies.get(OIDC_COOKIE, "")
    if error or not code or not state or not browser:
        gw.failed_auth.note("console sign-in not completed", host)
        return _refused(request, "the identity provider did not sign you in; try again")
    with gw.db.begin() as conn:
        verifier = sessions.finish_oidc(conn, state=state, browser=browser[:128])
    if verifier is None:
        gw.failed_auth.note("console sign-in state refused", host)
        return _refused(request, "this is not the sign-in this browser started; start again")
    try:
        endpoints = _metadata(gw)
        with _client(gw, f"{base_url(gw, request)}/console/signin/callback") as client:
            token = client.fetch_token(
                endpoints["token_endpoint"], code=code, code_verifier=verifier
            )
        principal = gw.tokens.verify(str(token.get("access_token", "")))
    except (DiscoveryError, OAuthError, OAuthTransportError, AuthError):
        gw.failed_auth.note("console sign-in token refused", host)
        return _refused(request, "the identity provider's answer was not accepted; try again")
    who = sessions.Identity(principal.subject, principal.department, principal.roles)
    if not who.roles:
        return _refused(request, "your identity carries no role for this gateway")
    return _signed_in(gw, request, _open(gw, who, sessions.OIDC))


@router.post("/signout")
async def signout(request: Request, who: Annotated[Caller, Depends(caller)]) -> Response:
    gw = gateway(request)
    await posted(request, who)

    def close() -> None:
        with gw.db.begin() as conn:
            sessions.close_session(conn, who.secret)
            gw.audit.record(
                conn,
                type="console.signed_out",
                principal=who.principal,
                action="sign_out",
                target="console",
                allowed=True,
            )

    await call(close)
    response = RedirectResponse("/console/signin", status_code=303)
    clear_cookie(response, gw, session_cookie(gw))
    return response


__all__ = ["NeedSignIn", "router"]
