"""`insitu job …`: submit jobs, list them, read and save results, preview a dp job's cost."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from gateway.cli.app import OutputOpt, job_app, parse_param
from gateway.cli.client import Client
from gateway.cli.output import CliError, errors
from gateway.cli.render import Format, choose, col, emit, say, show
from gateway.cli.results import print_result, save

PurposeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--purpose",
        help="The id of a purpose the dataset's owner approved (repeat for each "
        "conditionally shared dataset), or a description.",
    ),
]
ParamOpt = Annotated[list[str] | None, typer.Option("--param", "-p", help="name=value")]
FINISHED = {"released", "suppressed", "failed", "cancelled"}


def _body(
    template: str, param: list[str] | None, version: int | None, purpose: list[str] | None
) -> dict[str, Any]:
    return {
        "template": template,
        "version": version,
        "parameters": dict(parse_param(p) for p in param or []),
        "purpose": (purpose or [""])[0],
        "purposes": (purpose or [])[1:],
    }


def wait_for(client: Client, job_id: str, timeout: float = 300.0) -> dict[str, Any]:
    """Long-poll the result, showing the job's state on stderr (a spinner on a terminal)."""
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    body: dict[str, Any] = {"status": "accepted"}
    with errors.status(f"job {job_id}: accepted") as status:
        while True:
            step = max(0.0, min(2.0, deadline - time.monotonic()))
            body = client.get(f"/v1/jobs/{job_id}/result", params={"wait": step})
            if body["status"] in FINISHED or time.monotonic() >= deadline:
                return body
            status.update(f"job {job_id}: {body['status']} ({time.monotonic() - started:.0f} s)")


@job_app.command("submit")
def job_submit(
    template: str,
    *,
    param: ParamOpt = None,
    version: Annotated[int | None, typer.Option()] = None,
    purpose: PurposeOpt = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the result.")] = False,
    save_to: Annotated[
        Path | None, typer.Option("--save", help="With --wait: write the result to FILE.")
    ] = None,
    output: OutputOpt = None,
) -> None:
    """Submit a job running an approved template (prints its id, or the result with --wait)."""
    client = Client()
    out = client.post("/v1/jobs", json=_body(template, param, version, purpose))
    if not wait:
        typer.echo(out["id"])
        return
    body = wait_for(client, out["id"])
    if save_to is not None:
        save(body, save_to)
    print_result(body, choose(output, Format.TABLE))
    if body["status"] != "released":
        raise CliError(f"job {out['id']} {body['status']}", 1)


@job_app.command("estimate")
def job_estimate(
    template: str,
    param: ParamOpt = None,
    version: Annotated[int | None, typer.Option()] = None,
    purpose: PurposeOpt = None,
    output: OutputOpt = None,
) -> None:
    """What a dp job would charge, what your department has left, and the expected 95 %
    interval half-width per measure — nothing is run or reserved."""
    out = Client().post("/v1/jobs/estimate", json=_body(template, param, version, purpose))
    fmt = choose(output, Format.TABLE)
    if fmt is not Format.TABLE:
        show(out, fmt)
        return
    cost, left = out["cost"], out["remaining"]
    say(
        f"{out['template']}@{out['version']} on {out['dataset']} ({out['period']}): "
        f"charge ρ {cost['rho']} (ε {cost['epsilon']:.3f} at δ 1e-6), remaining ρ {left['rho']}"
        f" — {'fits' if out['fits_department_budget'] else 'does NOT fit'} the budget"
    )
    if not out["admitted"]:
        refusal = out.get("refusal") or {}
        say(f"would be refused: [{refusal.get('reason_code')}] {refusal.get('reason')}")
    rows = [{"measure": name, **values} for name, values in out["accuracy"].items()]
    emit(
        rows,
        [
            col("measure", ident=True),
            col("± 95 %", "ci95_half_width", number=True),
            col("noise scale", "scale", number=True),
        ],
        Format.TABLE,
        title="expected accuracy of each released number",
    )
    if any(r.get("ci95_half_width") is None for r in rows):
        say("a mean's interval depends on its group's noisy count, a quantile has none")


@job_app.command("list")
def job_list(
    *,
    status: Annotated[str | None, typer.Option(help="accepted, running, released, …")] = None,
    template: Annotated[str | None, typer.Option()] = None,
    since: Annotated[datetime | None, typer.Option(help="ISO time.")] = None,
    department: Annotated[
        bool, typer.Option("--department", help="Your department's jobs, not only yours.")
    ] = False,
    limit: Annotated[int, typer.Option("-n", "--limit", min=1, max=10_000)] = 50,
    output: OutputOpt = None,
) -> None:
    """Your jobs, newest first."""
    client = Client()
    params: dict[str, Any] = {"scope": "department" if department else "mine"}
    params.update(
        {k: v for k, v in {"status": status, "template": template}.items() if v is not None}
    )
    if since is not None:
        params["since"] = since.isoformat()
    items: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None and len(items) < limit:
        page = client.get("/v1/jobs", params={**params, "offset": offset, "limit": min(500, limit)})
        items += page["items"]
        offset = page["next"]
    emit(
        items[:limit],
        [
            col("id", ident=True),
            col("template", ident=True),
            col("version", number=True),
            col("kind"),
            col("status"),
            col("created", "created_at"),
            col("error"),
        ],
        choose(output, Format.TABLE),
        title=f"{len(items[:limit])} job(s), newest first",
    )


@job_app.command("show")
def job_show(job_id: str, output: OutputOpt = None) -> None:
    show(Client().get(f"/v1/jobs/{job_id}"), choose(output, Format.JSON))


@job_app.command("result")
def job_result(
    job_id: str,
    wait: float = 0,
    save_to: Annotated[
        Path | None,
        typer.Option(
            "--save",
            help="Write the result to FILE: the whole answer as JSON (checkable with "
            "`insitu audit receipt FILE`), or the rows when FILE ends in .csv.",
        ),
    ] = None,
    output: OutputOpt = None,
) -> None:
    """A job's result: the released table, withheld cells and the receipt."""
    client = Client()
    if wait > 0:
        body = wait_for(client, job_id, timeout=wait)
    else:
        body = client.get(f"/v1/jobs/{job_id}/result", params={"wait": 0})
    if save_to is not None and "receipt" in body:
        save(body, save_to)
    print_result(body, choose(output, Format.TABLE))
    if body["status"] not in {"released", "suppressed"}:
        raise CliError(f"job {job_id} is {body['status']}", 1)


@job_app.command("cancel")
def job_cancel(job_id: str) -> None:
    """Cancel a job of your department that has not ended (a dp job's budget is returned)."""
    out = Client().delete(f"/v1/jobs/{job_id}")
    typer.echo(f"{out['id']} {out['status']}")
