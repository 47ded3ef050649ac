"""`insitu job …`: submit jobs and read results."""

from __future__ import annotations

from typing import Annotated

import typer

from gateway.cli.app import job_app, parse_param, print_json, print_result
from gateway.cli.client import Client
from gateway.cli.output import CliError


@job_app.command("submit")
def job_submit(
    template: str,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="name=value")] = None,
    version: Annotated[int | None, typer.Option()] = None,
    purpose: str = "",
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the result.")] = False,
) -> None:
    """Submit a job running an approved template."""
    parameters = dict(parse_param(p) for p in param or [])
    client = Client()
    out = client.post(
        "/v1/jobs",
        json={
            "template": template,
            "version": version,
            "parameters": parameters,
            "purpose": purpose,
        },
    )
    if not wait:
        typer.echo(out["id"])
        return
    body = client.get(f"/v1/jobs/{out['id']}/result", params={"wait": 300})
    print_result(body)
    if body["status"] != "released":
        raise CliError(f"job {out['id']} {body['status']}", 1)


@job_app.command("show")
def job_show(job_id: str) -> None:
    print_json(Client().get(f"/v1/jobs/{job_id}"))


@job_app.command("result")
def job_result(job_id: str, wait: float = 0) -> None:
    body = Client().get(f"/v1/jobs/{job_id}/result", params={"wait": wait})
    print_result(body)
    if body["status"] not in {"released", "suppressed"}:
        raise CliError(f"job {job_id} is {body['status']}", 1)
