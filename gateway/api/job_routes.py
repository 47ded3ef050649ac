"""/v1/jobs: submit (202), status, result (with optional wait)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.deps import GatewayDep, PrincipalDep
from gateway.jobs import reads, submit
from gateway.jobs.model import TERMINAL

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    template: str = Field(pattern=r"^[a-z][a-z0-9-]{0,99}$")
    version: int | None = Field(default=None, ge=1)
    parameters: dict[str, Any] = Field(default_factory=dict, max_length=50)
    purpose: str = Field(default="", max_length=500)


@router.post("", status_code=202)
def submit_job(
    body: JobRequest,
    gw: GatewayDep,
    principal: PrincipalDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> dict[str, Any]:
    return submit.submit(
        gw,
        principal,
        template_id=body.template,
        version=body.version,
        parameters=body.parameters,
        purpose=body.purpose,
        idempotency_key=idempotency_key,
    )


@router.get("/{job_id}")
def show_job(job_id: str, gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    return reads.show(gw, principal, job_id)


@router.get("/{job_id}/result")
def job_result(
    job_id: str,
    gw: GatewayDep,
    principal: PrincipalDep,
    wait: Annotated[float, Query(ge=0, le=300)] = 0,
) -> JSONResponse:
    body = reads.result(gw, principal, job_id, wait_s=wait)
    status = 200 if body["status"] in {s.value for s in TERMINAL} else 202
    return JSONResponse(body, status_code=status)
