"""/v1/purposes (the condition of 有条件共享) and /v1/verify/alerts (sweeps, for owners)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.deps import GatewayDep, PrincipalDep
from gateway.api.models import Alerts, Purpose, Purposes
from gateway.api.openapi import problems
from gateway.authz import require
from gateway.catalogue import purposes
from gateway.jobs import verify_keys as verify_quota

router = APIRouter(tags=["purposes"])


class PurposeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}\.[a-z][a-z0-9_]{0,62}$")
    purpose: str = Field(min_length=1, max_length=500)


class PurposeDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expires_at: datetime | None = None


@router.get("/v1/purposes", response_model=Purposes)
def list_purposes(gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    return {"items": purposes.list_visible(gw, principal)}


@router.post("/v1/purposes", status_code=201, response_model=Purpose, responses=problems(404, 409))
def request_purpose(
    body: PurposeRequest, gw: GatewayDep, principal: PrincipalDep
) -> dict[str, Any]:
    """The requesting department asks a dataset's owner for a purpose."""
    return purposes.request(gw, principal, body.dataset, body.purpose)


@router.post("/v1/purposes/{purpose_id}/approvals", status_code=201, responses=problems(409))
def approve_purpose(
    purpose_id: str, body: PurposeDecision, gw: GatewayDep, principal: PrincipalDep
) -> dict[str, Any]:
    return purposes.decide(gw, principal, purpose_id, approve=True, expires_at=body.expires_at)


@router.post("/v1/purposes/{purpose_id}/rejections", status_code=201, responses=problems(409))
def reject_purpose(
    purpose_id: str, body: PurposeDecision, gw: GatewayDep, principal: PrincipalDep
) -> dict[str, Any]:
    return purposes.decide(gw, principal, purpose_id, approve=False, expires_at=None)


@router.get("/v1/verify/alerts", response_model=Alerts)
def verify_alerts(gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    """Sweeps of the caller's department's datasets (data owners)."""
    require(
        gw,
        principal,
        "template",
        "approve",
        event="verify.denied",
        target="verify:alerts",
        read_event="verify.alerts_read",
    )
    return {"items": verify_quota.alerts_for(gw, principal)}
