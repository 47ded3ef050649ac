"""The console's security rules, on the real app and store: sign-in links are single-use and
short-lived, pages need a session, every POST needs the session's CSRF token, cookies are
HttpOnly/Secure/SameSite=Strict, sessions expire, and one role cannot reach another role's
actions (the use cases refuse it, and the refusal is audited as over the API)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import ValidationError

from gateway import home
from gateway.api import create_app
from gateway.console import sessions
from gateway.console.render import env, neutralise
from gateway.console.routes import ROUTERS
from gateway.settings import Settings

UUID = "00000000-0000-0000-0000-000000000001"
ALL_ROLES = ("analyst", "data_owner", "security_officer", "auditor")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One home for the module (each test signs in with its own link and session)."""
    home_dir = tmp_path_factory.mktemp("console") / "home"
    settings = Settings(home=home_dir, console_insecure_http_cookies=True)
    home.init_home(settings)
    application = create_app(settings, run_workers=False)
    yield application


def client_for(app: Any) -> TestClient:
    return TestClient(app, base_url="http://127.0.0.1", follow_redirects=False)


def issue(app: Any, subject: str, department: str, *roles: str, ttl_s: int = 300) -> str:
    gw = app.state.gateway
    with gw.db.begin() as conn:
        return sessions.issue_link(
            conn, sessions.identity(subject, department, list(roles)), ttl_s=ttl_s
        )


def redeem(client: TestClient, secret: str) -> Any:
    form = client.get("/console/signin/link", params={"token": secret})
    assert form.status_code == 200
    pre = re.search(r'name="pre" value="([^"]+)"', form.text)
    assert pre is not None
    return client.post("/console/signin/link", data={"token": secret, "pre": pre.group(1)})


def signed_in(app: Any, subject: str, department: str, *roles: str) -> tuple[TestClient, str]:
    """A client with a session, and the session's CSRF token (read from a page's form)."""
    client = client_for(app)
    assert redeem(client, issue(app, subject, department, *roles)).status_code == 200
    inbox = client.get("/console/inbox")
    assert inbox.status_code == 200, inbox.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', inbox.text)
    assert csrf is not None
    return client, csrf.group(1)


def audit_events(app: Any) -> list[dict[str, Any]]:
    gw = app.state.gateway
    with gw.db.connect() as conn:
        rows = gw.audit.log.query(conn, limit=1000)
    return [json.loads(body) for _, body in rows]


def console_routes(method: str) -> list[str]:
    paths = []
    for route in (r for router in ROUTERS for r in router.routes):
        if isinstance(route, APIRoute) and method in route.methods and "/signin" not in route.path:
            paths.append(
                route.path.replace("{template_id}", "t")
                .replace("{version}", "1")
                .replace("{job_id}", UUID)
                .replace("{proposal_id}", UUID)
                .replace("{purpose_id}", UUID)
            )
    return paths


def test_every_page_sends_a_caller_without_a_session_to_sign_in(app: Any) -> None:
    client = client_for(app)
    pages = console_routes("GET")
    assert len(pages) >= 15
    for path in pages:
        response = client.get(path)
        assert (response.status_code, response.headers.get("location")) == (
            303,
            "/console/signin",
        ), path
    client.cookies.set("insitu-console", "forged-or-expired")
    stale = client.get("/console/catalogue")
    assert stale.headers.get("location") == "/console/signin"


def test_every_post_refuses_a_missing_or_wrong_csrf_token_and_does_nothing(app: Any) -> None:
    client, csrf = signed_in(app, "all@stats", "stats", *ALL_ROLES)
    before = len(audit_events(app))
    posts = console_routes("POST")
    assert len(posts) >= 8
    for path in posts:
        missing = client.post(path, data={"decision": "approve", "comment": "x"})
        assert missing.status_code == 403, path
        wrong = client.post(path, data={"csrf": csrf[:-2] + "xx", "decision": "approve"})
        assert wrong.status_code == 403, path
        header = client.post(path, headers={"X-CSRF-Token": "nope"}, data={"decision": "x"})
        assert header.status_code == 403, path
    assert len(audit_events(app)) == before  # nothing was decided, read or written
    # The same token in the form is accepted (the sign-out goes through).
    assert client.post("/console/signout", data={"csrf": csrf}).status_code == 303


def test_a_sign_in_link_works_once(app: Any) -> None:
    secret = issue(app, "once@stats", "stats", "analyst")
    first = client_for(app)
    assert redeem(first, secret).status_code == 200
    assert first.get("/console/catalogue").status_code == 200
    again = redeem(client_for(app), secret)
    assert again.status_code == 403
    assert "used already" in again.text
    signed = [e for e in audit_events(app) if e["type"] == "console.signed_in"]
    assert [e["actor"]["subject"] for e in signed].count("once@stats") == 1


def test_an_expired_or_unknown_link_is_refused(app: Any) -> None:
    expired = issue(app, "analyst@stats", "stats", "analyst", ttl_s=-1)
    assert redeem(client_for(app), expired).status_code == 403
    assert redeem(client_for(app), "x" * 43).status_code == 403


def test_the_link_form_must_come_from_the_browser_that_opened_it(app: Any) -> None:
    secret = issue(app, "analyst@stats", "stats", "analyst")
    forged = client_for(app).post("/console/signin/link", data={"token": secret, "pre": "abc"})
    assert forged.status_code == 403
    assert redeem(client_for(app), secret).status_code == 200  # the link was not used up


def test_links_are_stored_hashed(app: Any) -> None:
    secret = issue(app, "analyst@stats", "stats", "analyst")
    gw = app.state.gateway
    with gw.db.connect() as conn:
        stored = [tuple(r) for r in conn.execute(sessions.links.select()).all()]
    assert stored and all(secret not in str(row) for row in stored)
    assert sessions.digest(secret) in {row[0] for row in stored}


def test_session_cookie_is_httponly_secure_and_samesite_strict(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")  # the default: Secure cookies
    home.init_home(settings)
    application = create_app(settings, run_workers=False)
    client = TestClient(application, base_url="https://127.0.0.1", follow_redirects=False)
    response = redeem(client, issue(application, "analyst@stats", "stats", "analyst"))
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("__Host-insitu-console=")
    for flag in ("HttpOnly", "Secure", "SameSite=strict", "Path=/"):
        assert flag.lower() in cookie.lower(), flag
    page = client.get("/console/catalogue")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "unsafe-inline" not in policy
    assert page.headers["x-frame-options"] == "DENY"


def test_insecure_cookies_are_refused_off_loopback() -> None:
    with pytest.raises(ValidationError, match="loopback"):
        Settings(host="0.0.0.0", console_insecure_http_cookies=True)


def test_an_expired_session_is_sent_to_sign_in(app: Any) -> None:
    client, _ = signed_in(app, "analyst@stats", "stats", "analyst")
    gw = app.state.gateway
    with gw.db.begin() as conn:
        conn.execute(
            sessions.sessions.update().values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert client.get("/console/catalogue").headers.get("location") == "/console/signin"


def test_sign_out_ends_the_session(app: Any) -> None:
    client, csrf = signed_in(app, "analyst@stats", "stats", "analyst")
    cookie = client.cookies.get("insitu-console")
    assert client.post("/console/signout", data={"csrf": csrf}).status_code == 303
    other = client_for(app)
    other.cookies.set("insitu-console", cookie or "")
    replay = other.get("/console/catalogue")
    assert replay.headers.get("location") == "/console/signin"


@pytest.mark.parametrize(
    ("roles", "path", "form", "event"),
    [
        (("analyst",), "/console/templates/t/versions/1/decision", {"decision": "approve"},
         "template.denied"),
        (("analyst",), "/console/policy/proposals",
         {"add.role": "analyst", "add.object": "job", "add.action": "read"}, "policy.denied"),
        (("data_owner",), f"/console/policy/proposals/{UUID}/decision", {"decision": "approve"},
         "policy.denied"),
        (("auditor",), f"/console/purposes/{UUID}/decision", {"decision": "reject"},
         "purpose.denied"),
        (("security_officer",), "/console/templates/t/versions/1/jobs", {}, "job.denied"),
    ],
)  # fmt: skip
def test_a_role_cannot_reach_another_roles_actions(
    app: Any, roles: tuple[str, ...], path: str, form: dict[str, str], event: str
) -> None:
    client, csrf = signed_in(app, "someone@stats", "stats", *roles)
    response = client.post(path, data={**form, "csrf": csrf})
    assert response.status_code == 403, response.text
    denied = [e for e in audit_events(app) if e["type"] == event]
    assert denied and denied[-1]["actor"]["subject"] == "someone@stats"


@pytest.mark.parametrize(
    ("roles", "path"),
    [
        (("analyst",), "/console/audit"),
        (("analyst",), "/console/policy"),
        (("security_officer",), "/console/audit/stats"),
        (("auditor",), "/console/budgets"),
        (("data_owner",), "/console/policy/proposals"),
        (("analyst",), "/console/datasets/new"),  # listing a data folder: dataset register
    ],
)
def test_a_role_cannot_read_another_roles_pages(
    app: Any, roles: tuple[str, ...], path: str
) -> None:
    client, _ = signed_in(app, "someone@stats", "stats", *roles)
    assert client.get(path).status_code == 403


def test_free_text_is_escaped_and_control_characters_shown() -> None:
    hostile = 'x <img src=y onerror="alert(1)"> \u202eexe.txt \x1b[2J'
    shown = neutralise(hostile)
    assert "⟨U+202E⟩" in shown and "⟨U+001B⟩" in shown
    assert "\u202e" not in shown and "\x1b" not in shown
    rendered = env.from_string("<p>{{ t }}</p>").render(t=hostile)
    assert "<img" not in rendered and "&lt;img" in rendered
    assert "⟨U+202E⟩" in rendered


def test_a_data_owner_registers_only_files_of_its_own_data_folder(app: Any) -> None:
    client, csrf = signed_in(app, "owner@tax", "tax", "data_owner")
    for file in ("../market/enterprise_registry.parquet", "/etc/passwd", "x.csv"):
        response = client.post(
            "/console/datasets",
            data={"csrf": csrf, "file": file, "name": "x", "title": "x", "columns": "0"},
        )
        assert response.status_code == 422, file
        assert "unregistered files" in response.text
