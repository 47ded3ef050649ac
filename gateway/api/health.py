"""Liveness, readiness, metrics and the local issuer's public keys."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response

from gateway.api.deps import GatewayDep
from gateway.errors import NotFound, Unavailable

router = APIRouter()


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(gw: GatewayDep) -> dict[str, Any]:
    try:
        with gw.db.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        version = gw.policy.current().version
    except Exception:
        raise Unavailable("the store is not reachable") from None
    return {"status": "ready", "policy_version": version}


@router.get("/metrics")
def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/.well-known/jwks.json")
def jwks(gw: GatewayDep) -> dict[str, object]:
    if gw.issuer_keys is None:
        raise NotFound("this gateway uses an external identity provider")
    return gw.issuer_keys.public_jwks()
