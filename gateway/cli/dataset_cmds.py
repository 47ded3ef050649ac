"""`insitu dataset …`: the catalogue; `init` drafts a dataset document from a data file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.app import OutputOpt, dataset_app, read_document
from gateway.cli.client import Client
from gateway.cli.output import CliError, console
from gateway.cli.render import Format, choose, col, emit, say, show

DATASET_ID = re.compile(r"[a-z][a-z0-9_]{0,62}\.[a-z][a-z0-9_]{0,62}")
SHARE_CLASSES = ("unconditional", "conditional", "none")
CLASSIFICATIONS = ("general", "important", "core")


@dataset_app.command("register")
def dataset_register(file: Path) -> None:
    """Register a dataset from its YAML document (as the provider's data owner)."""
    body, content_type = read_document(file)
    out = Client().post("/v1/datasets", content=body, headers={"Content-Type": content_type})
    console.print(f"registered {out['id']}", markup=False)


@dataset_app.command("update")
def dataset_update(file: Path) -> None:
    """Replace a registered dataset's document (its provider's data owner; same id)."""
    body, content_type = read_document(file)
    from gateway.cli.documents import document_id

    dataset_id = document_id(body, content_type)
    if dataset_id is None or not DATASET_ID.fullmatch(dataset_id):
        raise CliError("the document needs an id written <department>.<name>")
    out = Client().request(
        "PUT", f"/v1/datasets/{dataset_id}", content=body, headers={"Content-Type": content_type}
    )
    console.print(f"updated {out['id']}", markup=False)


@dataset_app.command("list")
def dataset_list(output: OutputOpt = None) -> None:
    items = Client().get("/v1/datasets")["items"]
    emit(
        items,
        [
            col("id", ident=True),
            col("title"),
            col("provider", ident=True),
            col("share class", "share_class"),
            col("classification"),
        ],
        choose(output, Format.TABLE),
    )


@dataset_app.command("show")
def dataset_show(dataset_id: str, output: OutputOpt = None) -> None:
    show(Client().get(f"/v1/datasets/{dataset_id}"), choose(output, Format.JSON))


@dataset_app.command("dcat")
def dataset_dcat(dataset_id: str) -> None:
    """The dataset as DCAT-flavoured JSON-LD."""
    show(Client().get(f"/v1/datasets/{dataset_id}/dcat"), Format.JSON)


@dataset_app.command("profile")
def dataset_profile(dataset_id: str) -> None:
    """The newest data-quality profile of a dataset (counts and rates only) and its history."""
    show(Client().get(f"/v1/datasets/{dataset_id}/profile"), Format.JSON)


@dataset_app.command("snapshot")
def dataset_snapshot(
    dataset_id: str,
    path: Annotated[
        str | None, typer.Option(help="the new file under data/<provider>/ (default: same)")
    ] = None,
) -> None:
    """Announce a new snapshot of the provider's data: profiled, refused on a `must` rule."""
    body = {} if path is None else {"path": path}
    out = Client().post(f"/v1/datasets/{dataset_id}/snapshots", json=body)
    console.print(f"snapshot accepted: profile {out['id']} ({out['profile']['rows']} rows)")


@dataset_app.command("init")
def dataset_init(
    file: Annotated[Path, typer.Argument(help="A Parquet or CSV file under <home>/data/<dept>/.")],
    *,
    dataset_id: Annotated[
        str | None, typer.Option("--id", help="<department>.<name> (default: from the path).")
    ] = None,
    title: Annotated[str | None, typer.Option()] = None,
    share_class: Annotated[str, typer.Option(help=" | ".join(SHARE_CLASSES))] = "conditional",
    classification: Annotated[str, typer.Option(help=" | ".join(CLASSIFICATIONS))] = "general",
    home_dir: Annotated[
        Path | None, typer.Option("--home", help="The home whose data/ holds the file.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here (default: stdout).")
    ] = None,
) -> None:
    """Draft a dataset document from a data file's schema (run on the data owner's side).

    Column types are read by the sandbox's DuckDB, as the gateway will read them; every
    column starts `sensitive` (ids `identifier`) — review each sensitivity before registering."""
    from gateway.cli.documents import draft_dataset

    if share_class not in SHARE_CLASSES or classification not in CLASSIFICATIONS:
        raise CliError("--share-class or --classification is not one of the listed values")
    text = draft_dataset(
        file,
        dataset_id=dataset_id,
        title=title,
        share_class=share_class,
        classification=classification,
        home_dir=home_dir,
    )
    if out is None:
        typer.echo(text, nl=False)
    else:
        if out.exists():
            raise CliError(f"{out.name} exists; not overwriting it")
        out.write_text(text, encoding="utf-8")
        say(f"wrote {out.name}: review the sensitivities, then `insitu dataset register {out}`")
