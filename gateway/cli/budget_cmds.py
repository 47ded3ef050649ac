"""`insitu budget …`: privacy budgets (the DP ledger)."""

from __future__ import annotations

from typing import Annotated

import typer

from gateway.cli.app import OutputOpt, budget_app
from gateway.cli.client import Client
from gateway.cli.render import Col, Format, choose, col, emit


@budget_app.command("show")
def budget_show(
    as_json: Annotated[bool, typer.Option("--json", help="Same as --output json.")] = False,
    output: OutputOpt = None,
) -> None:
    """The privacy budgets your department may see: cap, spent, remaining (ρ and ε at δ)."""
    body = Client().get("/v1/budgets")
    emit(
        body["budgets"],
        [
            col("dataset", ident=True),
            col("department"),
            col("period"),
            col("ρ cap", "rho.cap", number=True),
            col("ρ spent", "rho.spent", number=True),
            col("ρ left", "rho.remaining", number=True),
            Col(
                "ε left",
                lambda b: f"{b['as_epsilon_delta']['remaining_epsilon']:.3f}",
                number=True,
            ),
        ],
        Format.JSON if as_json else choose(output, Format.TABLE),
        title="privacy budgets (zCDP ρ; ε at δ = 1e-6)",
        raw=body,
    )
