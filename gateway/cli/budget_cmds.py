"""`insitu budget …`: privacy budgets (the DP ledger)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from gateway.cli.app import budget_app, print_json
from gateway.cli.client import Client
from gateway.cli.output import console


@budget_app.command("show")
def budget_show(
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON.")] = False,
) -> None:
    """The privacy budgets your department may see: cap, spent, remaining (ρ and ε at δ)."""
    body = Client().get("/v1/budgets")
    if as_json:
        print_json(body)
        return
    table = Table(title="privacy budgets (zCDP ρ; ε at δ = 1e-6)")
    for column in ("dataset", "department", "period", "ρ cap", "ρ spent", "ρ left", "ε left"):
        table.add_column(column)
    for b in body["budgets"]:
        rho = b["rho"]
        table.add_row(
            b["dataset"],
            b["department"],
            b["period"],
            rho["cap"],
            rho["spent"],
            rho["remaining"],
            f"{b['as_epsilon_delta']['remaining_epsilon']:.3f}",
        )
    console.print(table)
