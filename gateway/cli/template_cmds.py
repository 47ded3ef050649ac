"""`insitu template …`: templates and their approval."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gateway.cli.app import print_json, read_document, template_app
from gateway.cli.client import Client
from gateway.cli.output import console


@template_app.command("propose")
def template_propose(file: Path) -> None:
    """Propose a template version from its YAML document."""
    body, content_type = read_document(file)
    out = Client().post("/v1/templates", content=body, headers={"Content-Type": content_type})
    console.print(f"proposed {out['id']}@{out['version']} {out['content_hash']} ({out['status']})")


def _decide(
    template_id: str, version: int, verb: str, content_hash: str | None, comment: str
) -> None:
    out = Client().post(
        f"/v1/templates/{template_id}/versions/{version}/{verb}",
        json={"content_hash": content_hash, "comment": comment},
    )
    console.print(f"{template_id}@{version} is {out['status']}")


@template_app.command("approve")
def template_approve(
    template_id: str,
    version: int,
    content_hash: Annotated[str | None, typer.Option("--hash")] = None,
    comment: str = "",
) -> None:
    """Approve a template version for your department's datasets (data owners)."""
    _decide(template_id, version, "approvals", content_hash, comment)


@template_app.command("reject")
def template_reject(
    template_id: str,
    version: int,
    content_hash: Annotated[str | None, typer.Option("--hash")] = None,
    comment: str = "",
) -> None:
    _decide(template_id, version, "rejections", content_hash, comment)


@template_app.command("list")
def template_list() -> None:
    table = Table("id", "version", "kind", "status", "title")
    for t in Client().get("/v1/templates")["items"]:
        table.add_row(t["id"], str(t["version"]), t["kind"], t["status"], t["title"])
    console.print(table)


@template_app.command("show")
def template_show(template_id: str, version: int) -> None:
    print_json(Client().get(f"/v1/templates/{template_id}/versions/{version}"))


@template_app.command("retire")
def template_retire(template_id: str, version: int, reason: str = "") -> None:
    """Retire a version (its author or a data owner of one of its datasets)."""
    out = Client().post(
        f"/v1/templates/{template_id}/versions/{version}/retirement", json={"reason": reason}
    )
    console.print(f"{template_id}@{version} is {out['status']}")


@template_app.command("preflight")
def template_preflight(template_id: str, version: int) -> None:
    """Run a version on synthetic data generated from its datasets' schemas (for reviewers)."""
    out = Client().get(f"/v1/templates/{template_id}/versions/{version}/preflight")
    console.print(f"{template_id}@{version} on synthetic data ({out['note']})", markup=False)
    console.print(f"parameters: {out['parameters']}", markup=False)
    if not out.get("ran"):
        console.print(f"not run: {out.get('reason')}", markup=False)
        return
    table = Table(*out["columns"], title=f"{out['total_rows']} row(s), first shown")
    for row in out["rows"]:
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)
