"""The analyst's pages: catalogue, templates with their SQL and a typed parameter form, submit,
my jobs with a live status, the result (withheld cells explained, DP estimates ± interval), the
receipt checked in one click, budgets with a chart.

Every read and action goes through the function the API route calls (same authorization, same
audit entry); nothing here decides who may do what.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse

from audit import VerificationError, verify_receipt
from gateway.api import catalogue_routes, template_routes
from gateway.catalogue import purposes, templates
from gateway.catalogue.documents import TemplateSpec, parse_document
from gateway.console import charts, results
from gateway.console.forms import field_for, values_from
from gateway.console.web import Caller, ConsoleRoute, call, caller, gateway, page, posted
from gateway.dp import budgets
from gateway.errors import GatewayError, InvalidInput
from gateway.jobs import cancel, reads, submit
from gateway.jobs.model import TERMINAL, JobStatus
from gateway.store import db

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)
Who = Annotated[Caller, Depends(caller)]
MAX_DOCUMENT = 1_000_000
EXAMPLE_TEMPLATE = """\
id: my-template
version: 1
kind: aggregate
title: What it answers
datasets: [dept.dataset]
parameters:
  year: {type: integer, min: 2015, max: 2030}
sql: |
  SELECT d.district, COUNT(*) AS n
  FROM dept.dataset AS d
  WHERE d.year = :year
  GROUP BY d.district
output: {count_column: n}
"""


@router.get("/catalogue")
def catalogue_page(request: Request, who: Who) -> Response:
    gw = gateway(request)
    body = catalogue_routes.list_datasets(gw, who.principal)
    asked = [
        p
        for p in purposes.list_visible(gw, who.principal)
        if p["department"] == who.session.department
    ]
    return page(request, who, "catalogue.html", datasets=body["items"], purposes=asked)


@router.post("/purposes")
async def request_purpose(request: Request, who: Who) -> Response:
    """Ask a conditionally shared dataset's owner to approve a purpose (有条件共享)."""
    form = await posted(request, who)
    await call(
        purposes.request,
        gateway(request),
        who.principal,
        form.get("dataset")[:130],
        form.get("purpose")[:500],
    )
    return RedirectResponse("/console/catalogue", status_code=303)


@router.get("/templates")
def templates_page(request: Request, who: Who) -> Response:
    body = template_routes.list_templates(gateway(request), who.principal)
    return page(request, who, "templates.html", templates=body["items"])


def _approved_purposes(request: Request, who: Caller, datasets: list[str]) -> dict[str, list[Any]]:
    """The department's approved purposes for each conditionally shared dataset."""
    if not datasets:
        return {}
    mine = purposes.list_visible(gateway(request), who.principal)
    return {
        ds: [
            p
            for p in mine
            if p["dataset"] == ds
            and p["department"] == who.session.department
            and p["status"] == "approved"
        ]
        for ds in datasets
    }


@router.get("/templates/new")
def new_template(request: Request, who: Who) -> Response:
    return page(request, who, "template_new.html", document=EXAMPLE_TEMPLATE)


@router.post("/templates")
async def propose_template(request: Request, who: Who) -> Response:
    """Propose a template (YAML, as `POST /v1/templates` takes it); its page then offers the
    pre-flight on synthetic data before any owner looks at it."""
    form = await posted(request, who)
    text = form.get("document")
    if len(text) > MAX_DOCUMENT:
        raise InvalidInput("the document is larger than 1 MB")
    spec = parse_document(text.encode(), TemplateSpec)
    stored = await call(templates.propose, gateway(request), who.principal, spec)
    return RedirectResponse(
        f"/console/templates/{stored.spec.id}/versions/{stored.spec.version}", status_code=303
    )


@router.get("/templates/{template_id}/versions/{version}")
def template_page(request: Request, who: Who, template_id: str, version: int) -> Response:
    gw = gateway(request)
    shown = template_routes.show_version(template_id, version, gw, who.principal)
    stored = templates.get(gw, template_id, version)
    with db.reading(gw.db) as conn:
        datasets = templates.datasets_of(conn, stored.spec)
    fields = []
    if stored.status is templates.Status.APPROVED:
        specs = templates.resolve_parameter_specs(gw, stored.spec, datasets)
        fields = [field_for(spec) for spec in specs.values()]
    conditional = [d.id for d in datasets.values() if d.share_class.value == "conditional"]
    ledger = []
    if fields and stored.spec.kind.value == "dp" and who.has("analyst"):
        ledger = [
            b
            for b in budgets.visible(gw, who.principal)
            if b["dataset"] in datasets and b["department"] == who.session.department
        ]
    return page(
        request,
        who,
        "template.html",
        template=shown,
        fields=fields,
        datasets=datasets,
        purposes=_approved_purposes(request, who, conditional)
        if who.has("analyst") and fields
        else {},
        conditional=conditional,
        ledger=ledger,
    )


@router.post("/templates/{template_id}/versions/{version}/jobs")
async def submit_job(request: Request, who: Who, template_id: str, version: int) -> Response:
    form = await posted(request, who)
    gw = gateway(request)

    def specs() -> dict[str, Any]:
        try:
            stored = templates.get(gw, template_id, version)
            with db.reading(gw.db) as conn:
                datasets = templates.datasets_of(conn, stored.spec)
            return templates.resolve_parameter_specs(gw, stored.spec, datasets)
        except GatewayError:
            return {}  # the submission below refuses it, audited as over the API

    parameters = values_from(await call(specs), form)
    named = [p for p in form.getlist("purpose_id") if p]
    purpose = named[0] if named else form.get("purpose").strip()[:500]
    accepted = await call(
        submit.submit,
        gw,
        who.principal,
        template_id=template_id,
        version=version,
        parameters=parameters,
        purpose=purpose,
        purposes=named[1:],
    )
    return RedirectResponse(f"/console/jobs/{accepted['id']}", status_code=303)


@router.get("/jobs")
def jobs_page(request: Request, who: Who) -> Response:
    jobs = reads.listing(gateway(request), who.principal)["items"]
    return page(request, who, "jobs.html", jobs=jobs)


def _status_context(request: Request, who: Caller, job_id: str) -> dict[str, Any]:
    gw = gateway(request)
    job = reads.show(gw, who.principal, job_id)
    context: dict[str, Any] = {"job": job, "terminal": JobStatus(job["status"]) in TERMINAL}
    if context["terminal"]:
        row, stored = reads.result_look(gw, who.principal, job_id)
        context["result"] = reads.result(gw, who.principal, row, stored)
        context["view"] = results.view(context["result"])
    return context


@router.get("/jobs/{job_id}")
def job_page(request: Request, who: Who, job_id: str) -> Response:
    return page(request, who, "job.html", **_status_context(request, who, job_id))


@router.get("/jobs/{job_id}/status")
def job_status(request: Request, who: Who, job_id: str) -> Response:
    """The status fragment htmx polls until the job is terminal (then it shows the result)."""
    return page(request, who, "job_status.html", **_status_context(request, who, job_id))


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(request: Request, who: Who, job_id: str) -> Response:
    """Cancel an unfinished job (its DP reservation is returned), as `DELETE /v1/jobs/{id}`."""
    await posted(request, who)
    await call(cancel.cancel, gateway(request), who.principal, job_id)
    return RedirectResponse(f"/console/jobs/{job_id}", status_code=303)


@router.post("/jobs/{job_id}/receipt")
async def check_receipt(request: Request, who: Who, job_id: str) -> Response:
    """Check the release's receipt against the log's public keys: the entry's hash, the
    inclusion proof up to the checkpoint's root, and the checkpoint's signature."""
    await posted(request, who)
    gw = gateway(request)
    row, stored = await call(reads.result_look, gw, who.principal, job_id)
    body = await call(reads.result, gw, who.principal, row, stored)
    receipt = body.get("receipt")
    outcome: dict[str, Any] = {"ok": False, "detail": "this job released nothing to check"}
    if receipt:
        log = gw.audit.log
        try:
            verified = verify_receipt(receipt, log.verifiers, log.origin)
        except VerificationError as exc:
            outcome = {"ok": False, "detail": str(exc)}
        else:
            outcome = {
                "ok": True,
                "index": verified.index,
                "size": verified.checkpoint.size,
                "origin": log.origin,
                "key": log.verifier.vkey,
            }
    return page(request, who, "receipt.html", outcome=outcome, job_id=job_id)


@router.get("/budgets")
def budgets_page(request: Request, who: Who) -> Response:
    rows = budgets.visible(gateway(request), who.principal)
    return page(
        request,
        who,
        "budgets.html",
        budgets=rows,
        chart=charts.budget_chart(rows),
        charts=bool(rows),
    )
