"""The console's request plumbing: the session cookie, CSRF on every POST, errors as pages.

`ConsoleRoute` answers the gateway's domain errors as an HTML page with the problem's status
and detail (the same `problem_for` mapping the API uses), a missing session with a redirect to
sign-in, and a POST without its session's CSRF token with 403.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from fastapi import Request, Response
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from audit import StoreError
from gateway.auth.errors import AuthError
from gateway.auth.principal import Principal
from gateway.console import sessions
from gateway.console.render import html
from gateway.context import Gateway
from gateway.errors import GatewayError, problem_for
from gateway.store import db
from policies import PolicyError
from sandbox import SandboxError

MAX_FORM = 64 * 1024
PRE_COOKIE = "insitu-console-pre"  # double-submit token of the sign-in forms (no session yet)
OIDC_COOKIE = "insitu-console-oidc"  # binds a pending OIDC sign-in to the browser that began it

NAV = {
    "analyst": [
        ("/console/catalogue", "Catalogue"),
        ("/console/templates", "Templates"),
        ("/console/jobs", "My jobs"),
        ("/console/budgets", "Budgets"),
    ],
    "data_owner": [
        ("/console/approvals", "Approvals"),
        ("/console/datasets/new", "Register a dataset"),
        ("/console/catalogue", "Catalogue"),
        ("/console/budgets", "Budgets"),
    ],
    "security_officer": [
        ("/console/policy", "Policy"),
        ("/console/policy/proposals", "Proposals"),
        ("/console/policy/check", "Check a decision"),
    ],
    "auditor": [
        ("/console/audit", "Audit log"),
        ("/console/audit/stats", "Call statistics"),
        ("/console/audit/state", "Log state"),
    ],
}


class NeedSignIn(Exception):
    """No session, or an expired one."""


class CsrfRefused(Exception):
    """A POST without its session's CSRF token."""


@dataclass(frozen=True, slots=True)
class Caller:
    session: sessions.Session
    secret: str

    @property
    def principal(self) -> Principal:
        return self.session.principal()

    def has(self, role: str) -> bool:
        return role in self.session.roles


def gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


def session_cookie(gw: Gateway) -> str:
    return (
        "insitu-console" if gw.settings.console_insecure_http_cookies else "__Host-insitu-console"
    )


def set_cookie(
    response: Response, gw: Gateway, name: str, value: str, *, max_age: int, lax: bool = False
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        secure=not gw.settings.console_insecure_http_cookies,
        httponly=True,
        samesite="lax" if lax else "strict",
    )


def clear_cookie(response: Response, gw: Gateway, name: str) -> None:
    set_cookie(response, gw, name, "", max_age=0)


def caller(request: Request) -> Caller:
    """The signed-in caller (a FastAPI dependency); `NeedSignIn` otherwise."""
    gw = gateway(request)
    secret = request.cookies.get(session_cookie(gw))
    if not secret or len(secret) > 128:
        raise NeedSignIn
    with db.reading(gw.db) as conn:
        session = sessions.load_session(conn, secret)
    if session is None:
        raise NeedSignIn
    return Caller(session, secret)


class Form:
    def __init__(self, fields: dict[str, list[str]]) -> None:
        self._fields = fields

    def get(self, name: str, default: str = "") -> str:
        values = self._fields.get(name)
        return values[0] if values else default

    def getlist(self, name: str) -> list[str]:
        return list(self._fields.get(name, []))

    def names(self) -> list[str]:
        return list(self._fields)


async def read_form(request: Request) -> Form:
    body = await request.body()
    if len(body) > MAX_FORM:
        raise CsrfRefused  # nothing this large is a console form
    return Form(parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True))


async def posted(request: Request, who: Caller) -> Form:
    """The form of a POST, once its CSRF token matched the session's; `CsrfRefused` else."""
    form = await read_form(request)
    token = form.get("csrf") or request.headers.get("X-CSRF-Token", "")
    if not token or not hmac.compare_digest(token, who.session.csrf):
        raise CsrfRefused
    return form


def page(
    request: Request, who: Caller | None, name: str, *, status: int = 200, **context: Any
) -> Response:
    nav: list[tuple[str, str]] = []
    if who is not None:
        for role in who.session.roles:
            nav += [item for item in NAV.get(role, []) if item not in nav]
    return html(request, name, {"who": who, "nav": nav, **context}, status=status)


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a (blocking) use case off the event loop."""
    return await run_in_threadpool(fn, *args, **kwargs)


class ConsoleRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except NeedSignIn:
                if request.headers.get("HX-Request"):
                    return Response(status_code=204, headers={"HX-Redirect": "/console/signin"})
                return RedirectResponse("/console/signin", status_code=303)
            except CsrfRefused:
                return page(
                    request,
                    None,
                    "error.html",
                    status=403,
                    title="Refused",
                    detail="the form was not sent by this console session (CSRF token missing "
                    "or wrong); reload the page and try again",
                )
            except (GatewayError, AuthError, PolicyError, SandboxError, StoreError) as exc:
                problem = problem_for(exc)
                try:
                    who: Caller | None = caller(request)
                except NeedSignIn:
                    who = None
                return page(
                    request,
                    who,
                    "error.html",
                    status=problem.status,
                    title=problem.title,
                    detail=problem.detail,
                )

        return handler
