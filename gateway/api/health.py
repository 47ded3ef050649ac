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
    """The local issuer's keys valid now: during a rotation window, the new and the old key."""
    if gw.local_keys is None:
        raise NotFound("this gateway uses an external identity provider")
    return gw.local_keys.public_jwks()


@router.get("/.well-known/oauth-protected-resource")
def protected_resource(gw: GatewayDep) -> dict[str, object]:
    """RFC 9728 metadata: which authorization server issues tokens for this gateway."""
    settings = gw.settings
    issuer = settings.oidc_issuer or settings.local_issuer
    return {
        "resource": settings.oidc_audience,
        "authorization_servers": [issuer],
        "bearer_methods_supported": ["header"],
    }
