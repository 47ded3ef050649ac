"""`insitu open …` (a data owner publishes released results) and `insitu apikey …` (a security
officer issues keys for the open API)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from gateway.cli.app import apikey_app, open_app, print_json
from gateway.cli.client import Client
from gateway.cli.output import console


@open_app.command("publish")
def open_publish(  # noqa: PLR0917 - typer maps each option to a parameter
    open_id: str,
    job: Annotated[str, typer.Option(help="the released job whose result is published")],
    title: Annotated[str, typer.Option()],
    description: Annotated[str, typer.Option()] = "",
    licence: Annotated[str, typer.Option()] = "CC-BY-4.0",
    update_cycle: Annotated[str, typer.Option()] = "unspecified",
) -> None:
    """Publish a released result as open dataset OPEN_ID (served under /open/v1)."""
    body = {
        "job": job,
        "title": title,
        "description": description,
        "licence": licence,
        "update_cycle": update_cycle,
    }
    out = Client().post(f"/v1/open/{open_id}", json=body)
    console.print(f"published {out['id']} v{out['version']} ({out['open_class']})")


@open_app.command("refresh")
def open_refresh(open_id: str, job: Annotated[str, typer.Option()]) -> None:
    """A new version of OPEN_ID from a newer released job of the same template."""
    out = Client().post(f"/v1/open/{open_id}/versions", json={"job": job})
    console.print(f"published {out['id']} v{out['version']}")


@open_app.command("unpublish")
def open_unpublish(open_id: str, note: Annotated[str, typer.Option()] = "") -> None:
    """Stop serving OPEN_ID; every version stays in its history."""
    out = Client().post(f"/v1/open/{open_id}/unpublish", json={"note": note})
    console.print(f"{out['id']} {out['status']} ({out['versions']} versions kept)")


@open_app.command("show")
def open_show(open_id: str) -> None:
    """Every version of OPEN_ID, also after unpublishing (its publisher's view)."""
    print_json(Client().get(f"/v1/open/{open_id}"))


@apikey_app.command("issue")
def apikey_issue(
    holder: str, per_minute: Annotated[int | None, typer.Option(min=1)] = None
) -> None:
    """Issue an API key; the secret is printed once, alone on stdout."""
    body: dict[str, object] = {"holder": holder}
    if per_minute is not None:
        body["per_minute"] = per_minute
    out = Client().post("/v1/apikeys", json=body)
    print(out["key"])  # the secret alone, for scripts


@apikey_app.command("list")
def apikey_list() -> None:
    table = Table("id", "holder", "per minute", "status", "created")
    for k in Client().get("/v1/apikeys")["items"]:
        table.add_row(k["id"], k["holder"], str(k["per_minute"]), k["status"], k["created_at"])
    console.print(table)


@apikey_app.command("revoke")
def apikey_revoke(key_id: str) -> None:
    out = Client().post(f"/v1/apikeys/{key_id}/revocations")
    console.print(f"API key {out['id']} {out['status']}")
