"""`create_app(settings)`: the FastAPI application, its error handlers and its lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from audit import EntryNotFoundError, StoreError
from gateway.api import (
    audit_routes,
    budget_routes,
    catalogue_routes,
    docs,
    finding_routes,
    health,
    job_routes,
    open_admin_routes,
    open_routes,
    openapi,
    policy_routes,
    purpose_routes,
    template_routes,
)
from gateway.api.metrics import Metrics, RequestContext
from gateway.api.open_fast import OpenFastPath
from gateway.auth.errors import AuthError
from gateway.catalogue import registry
from gateway.console.routes import mount as mount_console
from gateway.context import Gateway
from gateway.errors import GatewayError, Problem, problem_for
from gateway.jobs import reads
from gateway.jobs.waits import WaitSlots
from gateway.jobs.worker import WorkerPool
from gateway.opendata.service import OpenService
from gateway.settings import Settings
from gateway.store import db
from gateway.trail.writer import UNWRITABLE
from gateway.wiring import build_gateway
from policies import PolicyError
from sandbox import SandboxError

log = logging.getLogger("insitu.api")
PROBLEM_JSON = "application/problem+json"


def problem_response(status: int, body: dict[str, object]) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="insitu"'} if status == 401 else {}
    retry_after = body.get("retry_after")
    if status in (429, 503) and isinstance(retry_after, int) and retry_after > 0:
        headers["Retry-After"] = str(retry_after)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _install_state(
    app: FastAPI,
    gw: Gateway,
    settings: Settings,
    pool: WorkerPool | None,
    open_service: OpenService,
) -> None:
    """What requests find on `app.state`, and the middleware around every request."""
    app.state.gateway = gw
    app.state.metrics = Metrics(queue_depth=lambda: reads.queue_depth(gw))
    gw.job_hooks.append(app.state.metrics.job_finished)
    app.add_middleware(OpenFastPath, service=open_service)  # inside the request context
    app.add_middleware(RequestContext, metrics=app.state.metrics)
    app.state.pool = pool
    app.state.open = open_service
    app.add_exception_handler(open_routes.RateLimited, open_routes.limited_response)
    app.add_exception_handler(open_routes.UnknownKey, open_routes.unknown_key_response)
    app.state.waits = WaitSlots(settings.max_waits_per_caller)


def create_app(
    settings: Settings, *, gateway: Gateway | None = None, run_workers: bool = True
) -> FastAPI:
    owns_gateway = gateway is None
    gw = gateway if gateway is not None else build_gateway(settings)
    pool = WorkerPool(gw, size=settings.workers) if run_workers else None
    open_service = OpenService.build(gw)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if gw.sorted_copies is not None:  # copies of files no longer current go, off the path
            gw.sorted_copies.sweep(lambda: registry.file_sources(gw))
        if pool is not None:
            pool.start()
        try:
            yield
        finally:
            if pool is not None:
                pool.stop()
            open_service.close()
            if owns_gateway:
                gw.close()

    app = FastAPI(
        title="insitu",
        version="0.1.0",
        summary="Data stays home: approved templates run beside the data; only results leave.",
        lifespan=lifespan,
        docs_url=None,  # served from vendored assets by gateway.api.docs
        redoc_url=None,  # ReDoc would load its script from a CDN
    )
    _install_state(app, gw, settings, pool, open_service)

    async def on_domain_error(request: Request, exc: Exception) -> JSONResponse:
        problem = problem_for(exc)
        if problem.status == 500:
            log.error("error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem_response(problem.status, problem.body(instance=request.url.path))

    # Domain errors are answered here; anything else is a bug and reaches the catch-all below.
    for base in (GatewayError, AuthError, PolicyError, SandboxError):
        app.add_exception_handler(base, on_domain_error)

    # A store that cannot write (disk full, database gone): 503, and nothing was released.
    async def on_store_error(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, EntryNotFoundError):
            return problem_response(
                404,
                Problem(404, "not-found", "Not found", "no such audit entry").body(
                    instance=request.url.path
                ),
            )
        log.error("store error on %s %s", request.method, request.url.path, exc_info=exc)
        problem = Problem(503, "unavailable", "Service unavailable", UNWRITABLE)
        return problem_response(503, problem.body(instance=request.url.path))

    for store_error in (*db.UNAVAILABLE, StoreError):
        app.add_exception_handler(store_error, on_store_error)

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        problem = problem_for(exc)
        return problem_response(problem.status, problem.body(instance=request.url.path))

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        body = {
            "type": "urn:insitu:problem:invalid-input",
            "title": "Invalid input",
            "status": 422,
            "detail": "the request has invalid fields",
            "instance": request.url.path,
            "errors": errors,
        }
        return problem_response(422, body)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        body = {
            "type": f"urn:insitu:problem:{slug}",
            "title": slug.replace("-", " ").capitalize(),
            "status": exc.status_code,
            "detail": "no such resource" if exc.status_code == 404 else str(exc.detail),
            "instance": request.url.path,
        }
        return problem_response(exc.status_code, body)

    for module in (
        open_routes,  # first: the anonymous hot path matches before every other route
        health,
        catalogue_routes,
        template_routes,
        job_routes,
        policy_routes,
        audit_routes,
        purpose_routes,
        budget_routes,
        open_admin_routes,
        finding_routes,
    ):
        app.include_router(module.router)
    docs.install(app)
    openapi.install(app)
    mount_console(app)
    app.include_router(catalogue_routes.quality_router)
    return app
