"""/v1/policies: the live rules, their history, and "may this subject do this?" checks."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from gateway import db, schema
from gateway.api.deps import GatewayDep, PrincipalDep
from gateway.authz import require
from policies import Request as PolicyRequest

router = APIRouter(prefix="/v1/policies", tags=["policy"])


class CheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    roles: list[str] = Field(min_length=1, max_length=20)
    department: str = Field(max_length=64)
    object: str = Field(max_length=200)
    action: str = Field(max_length=32)


@router.get("")
def current_policy(gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    require(gw, principal, "policy", "read", event="policy.denied", target="policy")
    engine = gw.policy.current()
    return {"version": engine.version, "rules": [r.text() for r in engine.rules()]}


@router.post("/check")
def check(body: CheckRequest, gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    require(gw, principal, "policy", "read", event="policy.denied", target="policy")
    decision = gw.policy.current().decide(
        PolicyRequest(
            roles=tuple(body.roles),
            department=body.department,
            obj=body.object,
            action=body.action,
        )
    )
    return {
        "allowed": decision.allowed,
        "rule": decision.rule,
        "reason": decision.reason,
        "policy_version": decision.policy_version,
    }


@router.get("/history")
def history(gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    require(gw, principal, "policy", "read", event="policy.denied", target="policy")
    p = schema.policy_versions
    with db.reading(gw.db) as conn:
        rows = conn.execute(
            sa.select(p.c.version, p.c.created_by, p.c.created_at, p.c.note).order_by(
                p.c.version.desc()
            )
        ).all()
    return {
        "items": [
            {
                "version": r.version,
                "created_by": r.created_by,
                "created_at": r.created_at.isoformat(),
                "note": r.note,
            }
            for r in rows
        ]
    }
