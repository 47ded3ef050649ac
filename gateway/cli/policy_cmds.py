"""`insitu policy …`: Casbin policy."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from gateway.cli.app import policy_app
from gateway.cli.client import Client
from gateway.cli.output import console


@policy_app.command("list")
def policy_list() -> None:
    out = Client().get("/v1/policies")
    console.print(f"policy version {out['version']}")
    for rule in out["rules"]:
        console.print(rule, markup=False, highlight=False)


@policy_app.command("test")
def policy_test(
    role: Annotated[list[str], typer.Option("--role")],
    department: Annotated[str, typer.Option()],
    obj: Annotated[str, typer.Option("--object")],
    action: Annotated[str, typer.Option()],
) -> None:
    """Would this decision be allowed? Prints the decision, rule and reason."""
    out = Client().post(
        "/v1/policies/check",
        json={"roles": role, "department": department, "object": obj, "action": action},
    )
    verdict = "allow" if out["allowed"] else "deny"
    console.print(f"{verdict} (policy v{out['policy_version']}): {out['reason']}", markup=False)
    if out["rule"]:
        console.print(f"rule: {out['rule']}", markup=False)
    if not out["allowed"]:
        raise typer.Exit(1)


@policy_app.command("history")
def policy_history() -> None:
    table = Table("version", "created by", "at", "note")
    for item in Client().get("/v1/policies/history")["items"]:
        table.add_row(str(item["version"]), item["created_by"], item["created_at"], item["note"])
    console.print(table)
