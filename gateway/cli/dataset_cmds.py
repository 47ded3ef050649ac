"""`insitu dataset …`: the catalogue."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from gateway.cli.app import dataset_app, print_json, read_document
from gateway.cli.client import Client
from gateway.cli.output import console


@dataset_app.command("register")
def dataset_register(file: Path) -> None:
    """Register a dataset from its YAML document (as the provider's data owner)."""
    body, content_type = read_document(file)
    out = Client().post("/v1/datasets", content=body, headers={"Content-Type": content_type})
    console.print(f"registered {out['id']}")


@dataset_app.command("list")
def dataset_list() -> None:
    table = Table("id", "title", "provider", "share class", "classification")
    for d in Client().get("/v1/datasets")["items"]:
        table.add_row(d["id"], d["title"], d["provider"], d["share_class"], d["classification"])
    console.print(table)


@dataset_app.command("show")
def dataset_show(dataset_id: str) -> None:
    print_json(Client().get(f"/v1/datasets/{dataset_id}"))


@dataset_app.command("dcat")
def dataset_dcat(dataset_id: str) -> None:
    """The dataset as DCAT-flavoured JSON-LD."""
    print_json(Client().get(f"/v1/datasets/{dataset_id}/dcat"))
