"""`insitu template …`: templates and their approval."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.app import OutputOpt, read_document, template_app
from gateway.cli.client import Client
from gateway.cli.output import console
from gateway.cli.render import Format, choose, col, emit, say, show, table


@template_app.command("propose")
def template_propose(file: Path) -> None:
    """Propose a template version from its YAML document."""
    body, content_type = read_document(file)
    out = Client().post("/v1/templates", content=body, headers={"Content-Type": content_type})
    say(f"proposed {out['id']}@{out['version']} {out['content_hash']} ({out['status']})")


def _decide(
    template_id: str, version: int, verb: str, content_hash: str | None, comment: str
) -> None:
    out = Client().post(
        f"/v1/templates/{template_id}/versions/{version}/{verb}",
        json={"content_hash": content_hash, "comment": comment},
    )
    say(f"{template_id}@{version} is {out['status']}")


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
def template_list(output: OutputOpt = None) -> None:
    emit(
        Client().get("/v1/templates")["items"],
        [
            col("id", ident=True),
            col("version", number=True),
            col("kind"),
            col("status"),
            col("title"),
        ],
        choose(output, Format.TABLE),
    )


@template_app.command("show")
def template_show(template_id: str, version: int, output: OutputOpt = None) -> None:
    show(
        Client().get(f"/v1/templates/{template_id}/versions/{version}"),
        choose(output, Format.JSON),
    )


@template_app.command("retire")
def template_retire(template_id: str, version: int, reason: str = "") -> None:
    """Retire a version (its author or a data owner of one of its datasets)."""
    out = Client().post(
        f"/v1/templates/{template_id}/versions/{version}/retirement", json={"reason": reason}
    )
    say(f"{template_id}@{version} is {out['status']}")


@template_app.command("preflight")
def template_preflight(template_id: str, version: int) -> None:
    """Run a version on synthetic data generated from its datasets' schemas (for reviewers)."""
    out = Client().get(f"/v1/templates/{template_id}/versions/{version}/preflight")
    say(f"{template_id}@{version} on synthetic data ({out['note']})")
    say(f"parameters: {out['parameters']}")
    if not out.get("ran"):
        say(f"not run: {out.get('reason')}")
        return
    columns = [col(c) for c in out["columns"]]
    console.print(table(f"{out['total_rows']} row(s), first shown", columns, out["rows"]))
