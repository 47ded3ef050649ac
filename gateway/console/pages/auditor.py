"""The auditor's pages: entries with filters (who, 谁提供 provider / 谁管理 manager / 谁使用 user,
dataset, template, decision, time), call statistics (调用次数) by day × department with a chart,
the log's state (size, newest checkpoint, keys, witnesses) and the bundle download.

Each page calls the `/v1/audit` route function itself, so each read is audited (`audit.read`,
durable before the page is sent) and refused (`audit.denied`) exactly as over the API.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from gateway.api import audit_routes
from gateway.console import charts
from gateway.console.web import Caller, ConsoleRoute, caller, gateway, page
from gateway.errors import InvalidInput

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)
Who = Annotated[Caller, Depends(caller)]
Text = Annotated[str, Query(max_length=190)]
FILTERS = ("type", "subject", "user", "provider", "manager", "dataset", "template", "decision")


def _day(text: str, *, end: bool = False) -> datetime | None:
    if not text:
        return None
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidInput("dates are YYYY-MM-DD") from None
    return day + timedelta(days=1) if end else day


@router.get("/audit")
def entries_page(
    request: Request,
    who: Who,
    *,
    type: Text = "",
    subject: Text = "",
    user: Text = "",
    provider: Text = "",
    manager: Text = "",
    dataset: Text = "",
    template: Text = "",
    decision: Text = "",
    since: Text = "",
    until: Text = "",
) -> Response:
    filters = dict(
        zip(
            FILTERS,
            (type, subject, user, provider, manager, dataset, template, decision),
            strict=True,
        )
    )
    body = audit_routes.entries(
        gateway(request),
        who.principal,
        limit=100,
        latest=True,
        since=_day(since),
        until=_day(until, end=True),
        type=type or None,
        subject=subject or None,
        user=user or None,
        provider=provider or None,
        manager=manager or None,
        dataset=dataset or None,
        template=template or None,
        decision=decision or None,
    )
    items = [_row(i) for i in body["items"]]
    return page(
        request,
        who,
        "audit.html",
        items=items,
        size=body["tree_size"],
        filters={**filters, "since": since, "until": until},
    )


def _row(item: dict[str, Any]) -> dict[str, Any]:
    event = item["event"]
    actor = event.get("actor") or {}
    return {
        "index": item["index"],
        "time": str(event.get("time", ""))[:19].replace("T", " "),
        "type": event.get("type", ""),
        "subject": actor.get("subject", ""),
        "department": actor.get("department", ""),
        "target": event.get("target", ""),
        "allowed": event.get("allowed"),
        "reason": event.get("reason") or "",
        "rule": event.get("rule") or "",
    }


@router.get("/audit/stats")
def stats_page(
    request: Request,
    who: Who,
    *,
    department: Text = "",
    dataset: Text = "",
    template: Text = "",
    since: Text = "",
    until: Text = "",
) -> Response:
    body = audit_routes.stats(
        gateway(request),
        who.principal,
        since=_day(since),
        until=_day(until, end=True),
        department=department or None,
        dataset=dataset or None,
        template=template or None,
    )
    rows = body["items"]
    return page(
        request,
        who,
        "stats.html",
        rows=rows,
        total=body["total"],
        chart=charts.calls_chart(rows),
        charts=bool(rows),
        filters={
            "department": department,
            "dataset": dataset,
            "template": template,
            "since": since,
            "until": until,
        },
    )


@router.get("/audit/state")
def state_page(request: Request, who: Who) -> Response:
    gw = gateway(request)
    checkpoint = audit_routes.checkpoint(gw, who.principal)
    keys = audit_routes.keys(gw, who.principal)
    return page(request, who, "state.html", checkpoint=checkpoint, keys=keys)


@router.get("/audit/bundle")
def bundle(request: Request, who: Who) -> Response:
    return audit_routes.bundle(gateway(request), who.principal)
