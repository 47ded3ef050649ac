"""/v1/findings: comparison findings in the responsible department's inbox, acknowledged and
closed there; counts (no keys) for the requesting department; statistics for the auditor."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query

from gateway.api.deps import GatewayDep, PrincipalDep
from gateway.findings import inbox

router = APIRouter(prefix="/v1/findings", tags=["findings"])
FindingId = Annotated[str, Path(max_length=36)]
Note = Annotated[str, Body(embed=True, max_length=500)]


@router.get("")
def list_findings(
    gw: GatewayDep,
    principal: PrincipalDep,
    state: Annotated[Literal["open", "acknowledged", "closed"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Findings routed to the caller's department (keys included: it holds them), a page at a
    time with the `total`."""
    return inbox.inbox(gw, principal, state=state, limit=limit, offset=offset)


@router.get("/summary")
def findings_summary(gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    """Counts by routed department, type, district and state of the caller's comparisons."""
    return {"items": inbox.summary(gw, principal)}


@router.get("/stats")
def findings_stats(gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    """Open/acknowledged/closed findings per department and the oldest open one's age."""
    return {"items": inbox.stats(gw, principal)}


@router.post("/{finding_id}/acknowledgements", status_code=201)
def acknowledge(
    finding_id: FindingId, gw: GatewayDep, principal: PrincipalDep, note: Note = ""
) -> dict[str, Any]:
    return inbox.transition(gw, principal, finding_id, to="acknowledged", note=note)


@router.post("/{finding_id}/closures", status_code=201)
def close(
    finding_id: FindingId, gw: GatewayDep, principal: PrincipalDep, note: Note
) -> dict[str, Any]:
    """Close a finding once corrected, with a note saying what was done."""
    return inbox.transition(gw, principal, finding_id, to="closed", note=note)
