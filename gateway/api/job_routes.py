"""/v1/jobs: submit (202 with `Location`, or 200 with the result with `?wait=`), list the
caller's jobs, status, result (with optional wait), cancel, and the cost preview of a dp job.

Routes that wait are coroutines (`gateway.jobs.waits`): a waiting client holds no thread, and a
client that hangs up frees its slot. Blocking use cases run in the thread pool for their own
short time only."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Annotated, Any, Literal

from anyio import to_thread
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway import timing
from gateway.api.bounds import MAX_VERSION
from gateway.api.deps import GatewayDep, PrincipalDep
from gateway.api.openapi import problems
from gateway.auth.principal import Principal
from gateway.context import Gateway
from gateway.jobs import cancel, estimate, reads, submit, waits
from gateway.jobs.model import TERMINAL, Job, JobStatus, StoredResult

# Status 499 (nginx's "client closed request"): nobody reads it, the access log shows why.
CLIENT_GONE = 499
WaitQuery = Annotated[float, Query(ge=0, le=waits.MAX_WAIT_S)]

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    template: str = Field(pattern=r"^[a-z][a-z0-9-]{0,99}$")
    version: int | None = Field(default=None, ge=1, le=MAX_VERSION)
    parameters: dict[str, Any] = Field(default_factory=dict, max_length=50)
    # The id of a purpose the dataset's owner approved (有条件共享), or a description.
    purpose: str = Field(default="", max_length=500)
    # Further purpose ids: one per conditionally shared dataset of the template.
    purposes: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=20
    )


class JobAccepted(BaseModel):
    id: str
    status: str
    replayed: bool | None = None


class JobView(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    status: JobStatus
    template: str
    version: int
    content_hash: str
    subject: str
    department: str
    purpose: str
    parameters: dict[str, Any]
    created_at: str
    started_at: str | None
    finished_at: str | None
    error: str | None
    audit_index: int | None
    kind: str | None = None


class JobPage(BaseModel):
    items: list[JobView]
    next: int | None = Field(description="The offset of the next page, or null.")


class JobResult(BaseModel):
    """The release: `columns`/`rows` (aggregates, dp estimates, verify answers, lists),
    `withheld` cells with their rule, `intervals`/`accuracy`/`privacy` for dp, and a receipt.
    Without `columns` when the job is not finished (202) or released nothing."""

    model_config = ConfigDict(extra="allow")
    job: JobView
    status: JobStatus
    columns: list[str] | None = None
    rows: list[list[Any]] | None = None
    withheld: list[dict[str, Any]] | None = None
    result_hash: str | None = None
    receipt: dict[str, Any] | None = None


class Estimate(BaseModel):
    """What a dp job would charge and how accurate it would be; nothing is reserved."""

    model_config = ConfigDict(extra="allow")
    template: str
    version: int
    dataset: str
    period: str
    cost: dict[str, Any]
    remaining: dict[str, Any]
    fits_department_budget: bool
    accuracy: dict[str, dict[str, Any]]
    admitted: bool
    refusal: dict[str, str] | None = None


async def _waited(
    request: Request,
    gw: Gateway,
    principal: Principal,
    job_id: str,
    wait: float,
    *,
    seen: int | None,
    job: Job | None = None,
    stored: StoredResult | None = None,
) -> Response:
    """The result once the job has ended within `wait` seconds (200), else its status (202).
    `job`: the row as the caller just read it with its `stored` result (None: not read);
    `seen`: `gw.jobs_finished.generation()` from before that (`waits.until_finished`)."""

    def result(row: Job, res: StoredResult | None) -> dict[str, Any]:
        return reads.result(gw, principal, row, res)

    if job is None or (wait > 0 and JobStatus(job.status) not in TERMINAL):
        slots: waits.WaitSlots = request.app.state.waits
        with slots.hold(principal):
            body = await waits.until_finished(
                gw, job_id, wait, seen=seen, gone=request.is_disconnected, then=result
            )
        if body is None:
            return Response(status_code=CLIENT_GONE)
    else:
        body = await to_thread.run_sync(result, job, stored)
    status = 200 if body["status"] in {s.value for s in TERMINAL} else 202
    return JSONResponse(body, status_code=status)


@router.post(
    "",
    status_code=202,
    response_model=JobAccepted,
    responses={
        200: {"description": "With `?wait=`: the job ended in time; its result (`JobResult`)"},
        **problems(404, 409, 410, 429),
    },
)
async def submit_job(
    request: Request,
    body: JobRequest,
    *,
    gw: GatewayDep,
    principal: PrincipalDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    wait: WaitQuery = 0,
) -> Response:
    seen: int | None = gw.jobs_finished.generation()  # before the job exists: its release after

    def run() -> dict[str, Any]:
        with timing.stage("submit"):  # admission is this stage less its `store:submit` part
            accepted = submit.submit(
                gw,
                principal,
                template_id=body.template,
                version=body.version,
                parameters=body.parameters,
                purpose=body.purpose,
                purposes=body.purposes,
                idempotency_key=idempotency_key,
            )
        if wait > 0:  # the caller's own job, of its department: what reading a result needs
            reads.may_read_result(gw, principal, accepted["id"])
        return accepted

    accepted = await to_thread.run_sync(run)
    location = {"Location": f"/v1/jobs/{accepted['id']}"}
    if wait > 0:
        if accepted.get("replayed"):  # an earlier job, which may have ended long ago
            seen = None
        waited = await _waited(request, gw, principal, accepted["id"], wait, seen=seen)
        if waited.status_code == 200:
            waited.headers.update(location)
            return waited
    return JSONResponse(accepted, status_code=202, headers=location)


@router.get("", response_model=JobPage)
def list_jobs(
    gw: GatewayDep,
    principal: PrincipalDep,
    *,
    status: JobStatus | None = None,
    template: Annotated[str | None, Query(max_length=100)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    scope: Literal["mine", "department"] = "mine",
    limit: Annotated[int, Query(ge=1, le=reads.MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """The caller's jobs (or its department's), newest first, one page at a time."""
    return reads.listing(
        gw,
        principal,
        status=status.value if status else None,
        template=template,
        since=since,
        until=until,
        scope=scope,
        limit=limit,
        offset=offset,
    )


@router.post("/estimate", response_model=Estimate, responses=problems(404, 410))
def estimate_job(body: JobRequest, gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    """A dp job's charge, the department's remaining budget and the expected 95 % interval
    half-widths, before running it; nothing is run, reserved or charged."""
    return estimate.estimate(
        gw,
        principal,
        template_id=body.template,
        version=body.version,
        parameters=body.parameters,
        purpose=body.purpose,
        purposes=body.purposes,
    )


@router.get("/{job_id}", response_model=JobView)
def show_job(job_id: str, gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    return reads.show(gw, principal, job_id)


@router.get(
    "/{job_id}/result",
    response_model=JobResult,
    responses={202: {"description": "Not finished (within `wait`): the job's status only"}},
)
async def job_result(
    request: Request,
    job_id: str,
    gw: GatewayDep,
    principal: PrincipalDep,
    wait: WaitQuery = 0,
) -> Response:
    seen = gw.jobs_finished.generation()  # before the read: a release after it wakes the wait
    job, stored = await to_thread.run_sync(
        functools.partial(reads.result_look, gw, principal, job_id, waiting=wait > 0)
    )
    return await _waited(request, gw, principal, job.id, wait, seen=seen, job=job, stored=stored)


@router.delete(
    "/{job_id}",
    response_model=JobAccepted,
    response_model_exclude_none=True,
    responses=problems(409),
)
def cancel_job(job_id: str, gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    """Cancel a job of the caller's department that has not ended (a `dp` job's budget
    reservation is returned); another department's job is 404, an ended one 409."""
    return cancel.cancel(gw, principal, job_id)
