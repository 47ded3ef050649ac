"""Liveness, readiness, metrics and the local issuer's public keys."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import APIRouter, Request, Response

from gateway.api.deps import GatewayDep
from gateway.api.models import Health, Ready
from gateway.api.openapi import problems
from gateway.context import Gateway
from gateway.errors import NotFound, Unavailable
from gateway.store import db

router = APIRouter()


# Health is answered off the request thread pool: however many requests hold its threads,
# liveness answers on the event loop and readiness on threads of its own.
_READINESS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="insitu-readyz")


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _checks(gw: Gateway, pool: Any) -> tuple[dict[str, bool], int | None]:
    """Ready only when the store takes a write, the job workers are alive, the sandbox can
    give a job a worker and the policy was read from the store within its refresh interval."""
    checks: dict[str, bool] = {}
    try:
        db.check_writable(gw.db)
        checks["store"] = True
    except Exception:
        checks["store"] = False
    checks["workers"] = pool is None or pool.alive()  # None: this process runs no workers
    try:
        checks["sandbox"] = gw.engine.ready()
    except Exception:
        checks["sandbox"] = False
    version = None
    try:
        version = gw.policy.current().version
        checks["policy"] = gw.policy.age_s() <= 2 * gw.policy.refresh_s + 1
    except Exception:
        checks["policy"] = False
    return checks, version


@router.get("/readyz", response_model=Ready, responses=problems(503))
async def readyz(gw: GatewayDep, request: Request) -> dict[str, Any]:
    """503 names the checks that failed (no detail beyond that). Answered on threads of its
    own, so a busy request thread pool never makes a live gateway look unready."""
    loop = asyncio.get_running_loop()
    checks, version = await loop.run_in_executor(_READINESS, _checks, gw, request.app.state.pool)
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        raise Unavailable(f"not ready: {', '.join(failed)}")
    return {"status": "ready", "policy_version": version, "checks": checks}


@router.get("/metrics")
def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/.well-known/jwks.json", responses=problems(404))
def jwks(gw: GatewayDep) -> dict[str, object]:
    """The local issuer's keys valid now: during a rotation window, the new and the old key."""
    if gw.local_keys is None:
        raise NotFound("this gateway uses an external identity provider")
    return gw.local_keys.public_jwks()


@router.get("/.well-known/oauth-protected-resource")
def protected_resource(gw: GatewayDep, request: Request) -> dict[str, object]:
    """RFC 9728 metadata: this gateway's resource URL (`INSITU_RESOURCE_URL`, else the URL the
    request came to) and which authorization server issues tokens for it."""
    settings = gw.settings
    issuer = settings.oidc_issuer or settings.local_issuer
    resource = settings.resource_url or str(request.base_url).rstrip("/")
    return {
        "resource": resource,
        "authorization_servers": [issuer],
        "bearer_methods_supported": ["header"],
    }
