"""The data owner's pages: pending template approvals (readable SQL, content hash) and pending
purposes for the department's datasets, approved or rejected in place.

The decisions are `templates.decide_approval` and `purposes.decide`, as the API's: the author
cannot approve, an owner decides only for its own department's datasets, approval binds to the
hash the page showed.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse

from gateway.api import catalogue_routes, purpose_routes, template_routes
from gateway.catalogue import preflight, purposes, templates
from gateway.console.web import Caller, ConsoleRoute, call, caller, gateway, page, posted
from gateway.context import Gateway
from gateway.errors import InvalidInput
from sandbox import ParameterSpec, SandboxError, domain_text

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)
Who = Annotated[Caller, Depends(caller)]


def _domains(parameters: dict[str, Any]) -> dict[str, str]:
    """Each parameter's domain in words ('an integer from 2015 to 2030')."""
    out = {}
    for name, body in parameters.items():
        try:
            out[name] = domain_text(ParameterSpec.from_mapping(name, body))
        except SandboxError:
            out[name] = "not a valid domain"
    return out


def pending(gw: Gateway, who: Caller) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Templates awaiting this department's decision, and purposes asked of its datasets."""
    mine = {
        d["id"]
        for d in catalogue_routes.list_datasets(gw, who.principal)["items"]
        if d["provider"] == who.session.department
    }
    waiting = []
    for t in template_routes.list_templates(gw, who.principal)["items"]:
        decided = {a["dataset_id"] for a in t["approvals"]}
        if t["status"] == "proposed" and (set(t["datasets"]) & mine) - decided:
            waiting.append({**t, "domains": _domains(t["parameters"])})
    asked = [
        p
        for p in purposes.list_visible(gw, who.principal)
        if p["dataset"] in mine and p["status"] == "requested"
    ]
    return waiting, asked


@router.get("/approvals")
def approvals_page(request: Request, who: Who) -> Response:
    gw = gateway(request)
    waiting, asked = pending(gw, who)
    alerts = purpose_routes.verify_alerts(gw, who.principal)["items"]
    until = (datetime.now(UTC) + timedelta(days=90)).date().isoformat()
    return page(
        request,
        who,
        "approvals.html",
        templates=waiting,
        purposes=asked,
        alerts=alerts,
        default_until=until,
    )


@router.get("/templates/{template_id}/versions/{version}/preflight")
def preflight_page(request: Request, who: Who, template_id: str, version: int) -> Response:
    """The version run on synthetic data from its datasets' schemas (no real record read)."""
    shown = preflight.preflight(gateway(request), who.principal, template_id, version)
    name = "preflight.html" if request.headers.get("HX-Request") else "preflight_page.html"
    return page(request, who, name, preflight=shown)


@router.post("/templates/{template_id}/versions/{version}/decision")
async def decide_template(request: Request, who: Who, template_id: str, version: int) -> Response:
    form = await posted(request, who)
    content_hash = form.get("content_hash") or None
    await call(
        templates.decide_approval,
        gateway(request),
        who.principal,
        template_id,
        version,
        approve=form.get("decision") == "approve",
        content_hash=content_hash,
        comment=form.get("comment")[:500],
    )
    return RedirectResponse("/console/approvals", status_code=303)


def _until(text: str) -> datetime:
    try:
        day = datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise InvalidInput("choose the date until which the purpose is approved") from None
    return datetime.combine(day, time(23, 59, 59), tzinfo=UTC)


@router.post("/purposes/{purpose_id}/decision")
async def decide_purpose(request: Request, who: Who, purpose_id: str) -> Response:
    form = await posted(request, who)
    approve = form.get("decision") == "approve"
    await call(
        purposes.decide,
        gateway(request),
        who.principal,
        purpose_id[:64],
        approve=approve,
        expires_at=_until(form.get("expires")) if approve else None,
    )
    return RedirectResponse("/console/approvals", status_code=303)
