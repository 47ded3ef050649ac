"""Signed-in administration of open results: /v1/open (a data owner publishes, refreshes,
unpublishes, sees the history) and /v1/apikeys (a security officer issues and revokes keys)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from gateway.api.deps import GatewayDep, PrincipalDep
from gateway.opendata import apikeys, publish
from gateway.opendata.service import OpenService

router = APIRouter(tags=["open"])
OpenId = Annotated[str, Path(pattern=r"^[a-z][a-z0-9-]{0,99}$")]


class Publication(BaseModel):
    model_config = ConfigDict(extra="forbid")
    job: str = Field(min_length=1, max_length=36)
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=4000)
    licence: str = Field(default="CC-BY-4.0", min_length=1, max_length=100)
    update_cycle: str = Field(default="unspecified", min_length=1, max_length=40)


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    holder: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    per_minute: int | None = Field(default=None, ge=1, le=10_000_000)


def _changed(request: Request) -> None:
    service: OpenService = request.app.state.open
    service.changed()


@router.post("/v1/open/{open_id}", status_code=201)
async def publish_result(
    open_id: OpenId, body: Publication, request: Request, gw: GatewayDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Publish a released result of an approved template as open dataset `open_id`."""
    about = body.model_dump(exclude={"job"})
    out = await run_in_threadpool(
        publish.publish, gw, principal, open_id, job_id=body.job, about=about
    )
    _changed(request)
    return out


@router.post("/v1/open/{open_id}/versions", status_code=201)
async def refresh_result(
    open_id: OpenId,
    request: Request,
    gw: GatewayDep,
    principal: PrincipalDep,
    job: Annotated[str, Body(embed=True, min_length=1, max_length=36)],
) -> dict[str, Any]:
    """A new version of `open_id` from a newer released job of the same template."""
    out = await run_in_threadpool(publish.publish, gw, principal, open_id, job_id=job, about=None)
    _changed(request)
    return out


@router.post("/v1/open/{open_id}/unpublish")
async def unpublish_result(
    open_id: OpenId,
    request: Request,
    gw: GatewayDep,
    principal: PrincipalDep,
    note: Annotated[str, Body(embed=True, max_length=500)] = "",
) -> dict[str, Any]:
    out = await run_in_threadpool(publish.unpublish, gw, principal, open_id, note)
    _changed(request)
    return out


@router.get("/v1/open/{open_id}")
def open_history(open_id: OpenId, gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    """The publisher's view: every version, also after unpublishing."""
    return publish.history(gw, principal, open_id)


@router.post("/v1/apikeys", status_code=201)
def issue_key(body: KeyRequest, gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    """An API key for an app developer; the secret is in this answer only."""
    per_minute = body.per_minute or gw.settings.open_key_per_minute
    return apikeys.issue(gw, principal, body.holder, per_minute)


@router.get("/v1/apikeys")
def list_keys(gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    return {"items": apikeys.list_keys(gw, principal)}


@router.post("/v1/apikeys/{key_id}/revocations", status_code=201)
def revoke_key(
    key_id: Annotated[str, Path(max_length=36)],
    request: Request,
    gw: GatewayDep,
    principal: PrincipalDep,
) -> dict[str, Any]:
    out = apikeys.revoke(gw, principal, key_id)
    service: OpenService = request.app.state.open
    service.keys.forget()
    return out
