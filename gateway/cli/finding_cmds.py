"""`insitu findings …`: comparison findings routed to your department (比对)."""

from __future__ import annotations

import csv
import sys
from typing import Annotated, Literal

import typer
from rich.table import Table

from gateway.cli.app import findings_app, print_json
from gateway.cli.client import Client
from gateway.cli.output import console

Output = Annotated[Literal["table", "json", "csv"], typer.Option("--output", "-o")]
COLUMNS = ("id", "type", "key", "district", "state", "requester", "created_at", "note")


@findings_app.command("list")
def findings_list(
    state: Annotated[str | None, typer.Option(help="open | acknowledged | closed")] = None,
    output: Output = "table",
) -> None:
    """Findings routed to your department (the keys your own data holds)."""
    params = {"state": state} if state else {}
    items = Client().get("/v1/findings", params=params)["items"]
    if output == "json":
        print_json(items)
        return
    if output == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(COLUMNS)
        writer.writerows([[i[c] for c in COLUMNS] for i in items])
        return
    table = Table(*COLUMNS[1:7])
    for i in items:
        table.add_row(*(str(i[c] or "") for c in COLUMNS[1:7]))
    console.print(table)


@findings_app.command("summary")
def findings_summary() -> None:
    """Counts by routed department, type, district and state of your comparisons' findings."""
    print_json(Client().get("/v1/findings/summary")["items"])


@findings_app.command("ack")
def findings_ack(finding_id: str, note: Annotated[str, typer.Option()] = "") -> None:
    out = Client().post(f"/v1/findings/{finding_id}/acknowledgements", json={"note": note})
    console.print(f"finding {out['id']} acknowledged")


@findings_app.command("close")
def findings_close(finding_id: str, note: Annotated[str, typer.Option()]) -> None:
    """Close a corrected finding; the note says what was done."""
    out = Client().post(f"/v1/findings/{finding_id}/closures", json={"note": note})
    console.print(f"finding {out['id']} closed")
