"""/open/v1: open results without sign-in (开放不出门). Nothing else is reachable here.

Every request is rate limited (per API key from `X-API-Key`, else per anonymous client
address, 429 with `Retry-After`) and counted into the call statistics as a summary
(`gateway.opendata.counting`), never one audit entry per read. Results are served from a
cache invalidated on publish (`gateway.opendata.cache`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from gateway.api.deps import GatewayDep
from gateway.errors import Forbidden, InvalidInput, NotFound, Problem
from gateway.opendata.cache import Entry
from gateway.opendata.service import ANONYMOUS, Caller, OpenService
from gateway.store import db

router = APIRouter(prefix="/open/v1", tags=["open"])
ApiKeyHeader = Annotated[str | None, Header(alias="X-API-Key", max_length=200)]


class RateLimited(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__("rate limited")
        self.retry_after = retry_after


class UnknownKey(Exception):
    pass


LIMITED = Problem(429, "rate-limited", "Too many requests", "slow down")
UNKNOWN_KEY = Problem(401, "unauthorized", "Unknown API key", "the API key is not valid")


def limited_response(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RateLimited)
    return JSONResponse(
        LIMITED.body(instance=request.url.path),
        status_code=429,
        media_type="application/problem+json",
        headers={"Retry-After": str(int(exc.retry_after))},
    )


def unknown_key_response(request: Request, exc: Exception) -> JSONResponse:
    body = UNKNOWN_KEY.body(instance=request.url.path)
    return JSONResponse(body, status_code=401, media_type="application/problem+json")


def _service(request: Request) -> OpenService:
    service: OpenService = request.app.state.open
    return service


def admit(request: Request, api_key: str | None, counted_as: str) -> Caller:
    """Who is calling (key holder or anonymous), within their rate limit; counted."""
    client = request.client.host if request.client else "unknown"
    return admit_client(_service(request), client, api_key, counted_as)


def admit_client(service: OpenService, client: str, api_key: str | None, counted_as: str) -> Caller:
    key = None
    if api_key is not None:
        key = service.keys.lookup(api_key)
        if key is None:
            service.gw.failed_auth.note("unknown API key", client)
            raise UnknownKey
    caller = service.caller(key, client)
    wait = service.limiter.take(caller.bucket, caller.per_minute)
    if wait:
        service.reads.note(caller.holder, counted_as, "limited")
        raise RateLimited(wait)
    service.reads.note(caller.holder, counted_as)
    return caller


def _published(request: Request, caller: Caller, open_id: str, version: int | None) -> Any:
    return published(_service(request), caller, open_id, version)


def published(service: OpenService, caller: Caller, open_id: str, version: int | None) -> Entry:
    entry = service.cache.entry(open_id, version)
    if entry is None:
        raise NotFound("no such open dataset")
    if entry.open_class == "conditional" and caller.holder == ANONYMOUS:
        raise Forbidden("this result is open on condition (有条件开放): read it with an API key")
    return entry


@router.get("/datasets")
async def catalogue(request: Request, x_api_key: ApiKeyHeader = None) -> Response:
    """Published results as a DCAT JSON-LD catalogue."""
    admit(request, x_api_key, "catalogue")
    body = _service(request).cache.catalogue()
    return Response(body, media_type="application/ld+json")


@router.get("/datasets/{open_id}")
async def dataset(
    request: Request,
    open_id: Annotated[str, Path(max_length=100)],
    version: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    x_api_key: ApiKeyHeader = None,
) -> Response:
    """One published result (latest version, or `version`) with its hashes and receipt."""
    caller = admit(request, x_api_key, open_id)
    entry = _published(request, caller, open_id, version)
    return Response(entry.json, media_type="application/json")


@router.get("/datasets/{open_id}/data.csv")
async def dataset_csv(
    request: Request,
    open_id: Annotated[str, Path(max_length=100)],
    version: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    x_api_key: ApiKeyHeader = None,
) -> Response:
    """The result table as CSV; its SHA-256 is `csv_sha256` in the receipt's entry."""
    caller = admit(request, x_api_key, open_id)
    entry = _published(request, caller, open_id, version)
    return Response(entry.csv, media_type="text/csv; charset=utf-8")


@router.get("/usage")
def usage(request: Request, x_api_key: ApiKeyHeader = None) -> dict[str, Any]:
    """Call counts per day × department × dataset, each at the signed checkpoint named."""
    admit(request, x_api_key, "usage")
    service = _service(request)
    service.reads.flush()  # an ended window's counts, before the figures are computed
    return service.usage.current()


@router.get("/audit/checkpoint")
def checkpoint(gw: GatewayDep, request: Request, x_api_key: ApiKeyHeader = None) -> dict[str, Any]:
    """The newest signed checkpoint of the audit log."""
    admit(request, x_api_key, "audit")
    with db.reading(gw.db) as conn:
        head = gw.audit.log.latest_head(conn)
    if head is None:
        committed = gw.audit.committer.checkpoint(0)
        assert committed.checkpoint is not None
        return {"checkpoint": committed.checkpoint, "tree_size": committed.checkpoint_size}
    return {"checkpoint": head.note, "tree_size": head.size}


@router.get("/audit/keys")
def keys(gw: GatewayDep, request: Request, x_api_key: ApiKeyHeader = None) -> dict[str, Any]:
    """The log's public verifier keys (current first) and its origin."""
    admit(request, x_api_key, "audit")
    log = gw.audit.log
    return {
        "origin": log.origin,
        "current": log.verifier.vkey,
        "vkeys": [v.vkey for v in log.verifiers],
    }


@router.get("/audit/proofs/consistency")
async def consistency(
    gw: GatewayDep,
    request: Request,
    first: Annotated[int, Query(ge=1)],
    second: Annotated[int, Query(ge=1)],
    x_api_key: ApiKeyHeader = None,
) -> dict[str, Any]:
    """That the log of `second` entries extends the log of `first` (RFC 6962 proof): hashes
    only, between sizes of signed checkpoints."""
    admit(request, x_api_key, "audit")

    def prove() -> list[bytes]:
        log = gw.audit.log
        with db.reading(gw.db) as conn:
            head = log.latest_head(conn)
            if head is None or not first <= second <= head.size:
                raise InvalidInput("need first <= second <= the newest checkpoint's size")
            return log.consistency_proof(conn, first, second)

    proof = await run_in_threadpool(prove)
    return {"first": first, "second": second, "proof": [p.hex() for p in proof]}
