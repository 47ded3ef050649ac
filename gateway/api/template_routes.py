"""/v1/templates: propose, list, show a version, approve, reject, retire, pre-flight."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from gateway.api.bounds import TemplateVersion
from gateway.api.deps import GatewayDep, PrincipalDep, document_body
from gateway.api.documents import parse_body
from gateway.api.models import Template, Templates
from gateway.api.openapi import problems
from gateway.auth.principal import Principal
from gateway.authz import require
from gateway.catalogue import preflight, templates
from gateway.catalogue.documents import TemplateSpec
from gateway.context import Gateway

router = APIRouter(prefix="/v1/templates", tags=["templates"])


class ApprovalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content_hash: str | None = Field(default=None, pattern=r"^sha256:[0-9a-f]{64}$")
    comment: str = Field(default="", max_length=500)


class RetirementRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=500)


@router.get("", response_model=Templates)
def list_templates(gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    require(
        gw,
        principal,
        "template",
        "read",
        event="template.denied",
        target="templates",
        read_event="template.read",
    )
    return {"items": [templates.view(t) for t in templates.list_all(gw)]}


@router.post("", status_code=201, response_model=Template, responses=problems(404, 409))
async def propose_template(
    request: Request,
    gw: GatewayDep,
    principal: PrincipalDep,
    body: Annotated[bytes, Depends(document_body)],
) -> dict[str, Any]:
    spec = parse_body(request, body, TemplateSpec)
    stored = await run_in_threadpool(templates.propose, gw, principal, spec)
    return templates.view(stored)


@router.get("/{template_id}/versions/{version}", response_model=Template, responses=problems(410))
def show_version(
    template_id: str, version: TemplateVersion, gw: GatewayDep, principal: PrincipalDep
) -> dict[str, Any]:
    target = f"template:{template_id}@{version}"
    require(
        gw,
        principal,
        "template",
        "read",
        event="template.denied",
        target=target,
        read_event="template.read",
    )
    return templates.view(templates.get(gw, template_id, version))


def _decide(
    template_id: str,
    version: TemplateVersion,
    body: ApprovalRequest,
    gw: Gateway,
    principal: Principal,
    *,
    approve: bool,
) -> dict[str, Any]:
    stored = templates.decide_approval(
        gw,
        principal,
        template_id,
        version,
        approve=approve,
        content_hash=body.content_hash,
        comment=body.comment,
    )
    return templates.view(stored)


@router.post(
    "/{template_id}/versions/{version}/approvals", status_code=201, responses=problems(409, 410)
)
def approve(
    template_id: str,
    version: TemplateVersion,
    body: ApprovalRequest,
    gw: GatewayDep,
    principal: PrincipalDep,
) -> dict[str, Any]:
    return _decide(template_id, version, body, gw, principal, approve=True)


@router.post(
    "/{template_id}/versions/{version}/rejections", status_code=201, responses=problems(409, 410)
)
def reject(
    template_id: str,
    version: TemplateVersion,
    body: ApprovalRequest,
    gw: GatewayDep,
    principal: PrincipalDep,
) -> dict[str, Any]:
    return _decide(template_id, version, body, gw, principal, approve=False)


@router.post(
    "/{template_id}/versions/{version}/retirement", status_code=201, responses=problems(409, 410)
)
def retire(
    template_id: str,
    version: TemplateVersion,
    body: RetirementRequest,
    gw: GatewayDep,
    principal: PrincipalDep,
) -> dict[str, Any]:
    """Retire a version (its author or an owner of one of its datasets): it answers 410 after."""
    stored = templates.retire(gw, principal, template_id, version, reason=body.reason)
    return templates.view(stored)


@router.get("/{template_id}/versions/{version}/preflight", responses=problems(410))
def run_preflight(
    template_id: str, version: TemplateVersion, gw: GatewayDep, principal: PrincipalDep
) -> dict[str, Any]:
    """The template run on synthetic data generated from its datasets' schemas."""
    return preflight.preflight(gw, principal, template_id, version)
