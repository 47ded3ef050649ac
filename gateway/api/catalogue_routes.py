"""/v1/datasets: register (YAML or JSON), list, show (also as DCAT JSON-LD), the data-quality
profile and snapshots; /v1/quality/alerts for a provider's owner."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from gateway.api.deps import GatewayDep, PrincipalDep, document_body
from gateway.api.documents import parse_body
from gateway.api.models import Dataset, Datasets
from gateway.api.openapi import problems
from gateway.authz import require
from gateway.catalogue import registry as catalogue
from gateway.catalogue.documents import DatasetSpec
from gateway.quality import snapshots
from gateway.quality import store as profiles
from gateway.store import db

router = APIRouter(prefix="/v1/datasets", tags=["catalogue"])


@router.get("", response_model=Datasets)
def list_datasets(gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    require(
        gw,
        principal,
        "catalogue",
        "read",
        event="catalogue.denied",
        target="catalogue",
        read_event="catalogue.read",
    )
    with db.reading(gw.db) as conn:
        items = catalogue.list_all(conn)
        quality = profiles.summaries(conn)
    return {"items": [{**catalogue.public_view(d), "quality": quality.get(d.id)} for d in items]}


@router.post("", status_code=201, response_model=Dataset, responses=problems(404, 409))
async def register_dataset(
    request: Request,
    gw: GatewayDep,
    principal: PrincipalDep,
    body: Annotated[bytes, Depends(document_body)],
) -> dict[str, Any]:
    spec = parse_body(request, body, DatasetSpec)
    registered = await run_in_threadpool(catalogue.register, gw, principal, spec)
    return catalogue.public_view(registered)


@router.put("/{dataset_id}", response_model=Dataset, responses=problems(409))
async def update_dataset(
    dataset_id: str,
    request: Request,
    gw: GatewayDep,
    principal: PrincipalDep,
    body: Annotated[bytes, Depends(document_body)],
) -> dict[str, Any]:
    """Replace a dataset's document (its provider's data owner; the same id and provider)."""
    spec = parse_body(request, body, DatasetSpec)
    updated = await run_in_threadpool(catalogue.update, gw, principal, dataset_id, spec)
    return catalogue.public_view(updated)


@router.get("/{dataset_id}", response_model=Dataset)
def show_dataset(dataset_id: str, gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    require(
        gw,
        principal,
        "catalogue",
        "read",
        event="catalogue.denied",
        target=f"dataset:{dataset_id}",
        read_event="catalogue.read",
    )
    with db.reading(gw.db) as conn:
        view = catalogue.public_view(catalogue.get(conn, dataset_id))
        latest = profiles.latest(conn, dataset_id)
    return {**view, "quality": None if latest is None else profiles.summary(latest)}


@router.get("/{dataset_id}/profile")
def show_profile(dataset_id: str, gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    """The newest data-quality profile (counts and rates only) and the history of verdicts."""
    require(
        gw,
        principal,
        "catalogue",
        "read",
        event="catalogue.denied",
        target=f"dataset:{dataset_id}",
        read_event="catalogue.read",
    )
    with db.reading(gw.db) as conn:
        catalogue.get(conn, dataset_id)  # 404 for an unknown dataset
        return {
            "dataset": dataset_id,
            "current": profiles.latest(conn, dataset_id),
            "history": profiles.history(conn, dataset_id),
        }


@router.post("/{dataset_id}/snapshots", status_code=201)
def take_snapshot(
    dataset_id: str,
    gw: GatewayDep,
    principal: PrincipalDep,
    path: Annotated[str | None, Body(embed=True, min_length=1, max_length=500)] = None,
) -> dict[str, Any]:
    """A new snapshot of the provider's data (a new file, or the same file changed in place):
    profiled in the sandbox; 422 naming the rule and column when a `must` rule fails."""
    return snapshots.take_snapshot(gw, principal, dataset_id, path)


@router.get("/{dataset_id}/dcat")
def show_dataset_dcat(dataset_id: str, gw: GatewayDep, principal: PrincipalDep) -> JSONResponse:
    """The dataset as DCAT-flavoured JSON-LD."""
    require(
        gw,
        principal,
        "catalogue",
        "read",
        event="catalogue.denied",
        target=f"dataset:{dataset_id}",
        read_event="catalogue.read",
    )
    with db.reading(gw.db) as conn:
        body = catalogue.dcat_view(catalogue.get(conn, dataset_id))
    return JSONResponse(body, media_type="application/ld+json")


quality_router = APIRouter(prefix="/v1/quality", tags=["catalogue"])


@quality_router.get("/alerts")
def quality_alerts(gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    """`should` rules failing (or drift) on the caller department's datasets."""
    return {"items": snapshots.alerts(gw, principal)}
