"""Every role's pages: the start page and the inbox of what waits for the caller, whose total is
shown in the header (loaded by htmx after the page, so a slow count never delays a page).

An inbox line is gathered only for a role the session holds, through the same reads as the
role's own pages (each audited as over the API).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse

from gateway.api import audit_routes, purpose_routes, template_routes
from gateway.catalogue import purposes
from gateway.console.pages.owner import pending
from gateway.console.web import NAV, Caller, ConsoleRoute, caller, gateway, page
from gateway.jobs import reads
from gateway.policy import reads as policy_reads

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)
Who = Annotated[Caller, Depends(caller)]


def inbox(request: Request, who: Caller) -> list[dict[str, Any]]:
    gw, me = gateway(request), who.principal
    lines: list[dict[str, Any]] = []
    if who.has("analyst"):
        jobs = reads.listing(gw, me)["items"]
        waiting = [j for j in jobs if j["status"] in {"accepted", "running"}]
        lines.append(
            {"label": "jobs still running", "count": len(waiting), "href": "/console/jobs"}
        )
        asked = [
            p
            for p in purposes.list_visible(gw, me)
            if p["department"] == me.department and p["status"] == "requested"
        ]
        lines.append(
            {
                "label": "purposes awaiting an owner",
                "count": len(asked),
                "href": "/console/catalogue",
            }
        )
        mine = [
            t
            for t in template_routes.list_templates(gw, me)["items"]
            if t["author"] == me.subject and t["status"] == "proposed"
        ]
        lines.append(
            {
                "label": "my templates awaiting approval",
                "count": len(mine),
                "href": "/console/templates",
            }
        )
    if who.has("data_owner"):
        templates, asked = pending(gw, who)
        lines.append(
            {"label": "templates to approve", "count": len(templates), "href": "/console/approvals"}
        )
        lines.append(
            {"label": "purposes to decide", "count": len(asked), "href": "/console/approvals"}
        )
        alerts = purpose_routes.verify_alerts(gw, me)["items"]
        lines.append(
            {"label": "verification alerts", "count": len(alerts), "href": "/console/approvals"}
        )
    if who.has("security_officer"):
        proposals = policy_reads.list_proposals(gw, me, status="proposed")["items"]
        others = [p for p in proposals if p["proposed_by"] != me.subject]
        lines.append(
            {
                "label": "policy proposals awaiting a second officer",
                "count": len(others),
                "href": "/console/policy/proposals",
            }
        )
    if who.has("auditor"):
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        stats = audit_routes.stats(gw, me, since=today)
        lines.append(
            {
                "label": "calls denied today",
                "count": stats["total"]["denied"],
                "href": "/console/audit?decision=denied",
            }
        )
    return lines


@router.get("")
def home(request: Request, who: Who) -> Response:
    for role in who.session.roles:
        if role in NAV:
            return RedirectResponse(NAV[role][0][0], status_code=303)
    return RedirectResponse("/console/inbox", status_code=303)


@router.get("/inbox")
def inbox_page(request: Request, who: Who) -> Response:
    return page(request, who, "inbox.html", lines=inbox(request, who))


@router.get("/inbox/count")
def inbox_count(request: Request, who: Who) -> Response:
    total = sum(line["count"] for line in inbox(request, who))
    return page(request, who, "inbox_count.html", total=total)
