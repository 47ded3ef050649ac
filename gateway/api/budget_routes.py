"""/v1/budgets: the privacy budget ledger, as the caller may see it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gateway.api.deps import GatewayDep, PrincipalDep
from gateway.api.models import Budgets
from gateway.dp import budgets

router = APIRouter(prefix="/v1/budgets", tags=["budgets"])


@router.get("", response_model=Budgets)
def list_budgets(gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    return {"budgets": budgets.visible(gw, principal)}
