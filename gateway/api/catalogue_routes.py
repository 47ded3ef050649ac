"""/v1/datasets: register (YAML or JSON), list, show (also as DCAT JSON-LD)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from gateway.api.deps import GatewayDep, PrincipalDep, document_body
from gateway.api.documents import parse_body
from gateway.authz import require
from gateway.catalogue import registry as catalogue
from gateway.catalogue.documents import DatasetSpec
from gateway.store import db

router = APIRouter(prefix="/v1/datasets", tags=["catalogue"])


@router.get("")
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
    return {"items": [catalogue.public_view(d) for d in items]}


@router.post("", status_code=201)
async def register_dataset(
    request: Request,
    gw: GatewayDep,
    principal: PrincipalDep,
    body: Annotated[bytes, Depends(document_body)],
) -> dict[str, Any]:
    spec = parse_body(request, body, DatasetSpec)
    registered = await run_in_threadpool(catalogue.register, gw, principal, spec)
    return catalogue.public_view(registered)


@router.get("/{dataset_id}")
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
        return catalogue.public_view(catalogue.get(conn, dataset_id))


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
