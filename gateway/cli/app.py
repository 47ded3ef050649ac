"""The command tree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from gateway.cli.output import CliError, console

app = typer.Typer(
    name="insitu",
    help="Data stays home: approved query templates run beside the data; only results leave.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
token_app = typer.Typer(help="Local token issuer.", no_args_is_help=True)
dataset_app = typer.Typer(help="The catalogue of datasets.", no_args_is_help=True)
template_app = typer.Typer(help="Query templates and their approval.", no_args_is_help=True)
job_app = typer.Typer(help="Jobs: run an approved template.", no_args_is_help=True)
policy_app = typer.Typer(help="Casbin policy.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
budget_app = typer.Typer(help="Privacy budgets.", no_args_is_help=True)
for sub, name in (
    (token_app, "token"),
    (dataset_app, "dataset"),
    (template_app, "template"),
    (job_app, "job"),
    (policy_app, "policy"),
    (audit_app, "audit"),
    (budget_app, "budget"),
):
    app.add_typer(sub, name=name)

HomeOpt = Annotated[
    Path | None, typer.Option("--home", help="Home directory (default $INSITU_HOME or ./.insitu).")
]


def print_json(data: Any) -> None:
    console.print_json(json.dumps(data, ensure_ascii=False, default=str))


def read_document(path: Path) -> tuple[bytes, str]:
    if not path.is_file():
        raise CliError(f"no such file: {path.name}")
    content_type = "application/json" if path.suffix == ".json" else "application/yaml"
    return path.read_bytes(), content_type


def parse_param(text: str) -> tuple[str, Any]:
    """`k=v`: v is read as a JSON literal when it is one (2024, true), else as a string."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise CliError(f"--param takes name=value, not {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    if isinstance(value, dict | list | float):
        value = raw  # only integers, booleans and strings come from the command line
    return name, value


def result_table(body: dict[str, Any]) -> Table:
    table = Table(title=f"job {body['job']['id']} — {body['status']}")
    for column in body.get("columns", []):
        table.add_column(column)
    for row in body.get("rows", []):
        table.add_row(*("" if v is None else str(v) for v in row))
    return table


def print_result(body: dict[str, Any]) -> None:
    if "columns" in body:
        console.print(result_table(body))
    withheld = body.get("withheld", [])
    if withheld:
        console.print(f"withheld by disclosure control: {len(withheld)} cell(s)")
        for cell in withheld:
            key = ", ".join(f"{k}={v}" for k, v in cell["key"].items())
            console.print(f"  {key}: {cell['reason']} ({cell['rule']})", markup=False)
    if body.get("job", {}).get("error"):
        console.print(f"error: {body['job']['error']}", markup=False)
    receipt = body.get("receipt")
    if receipt:
        console.print(
            f"receipt: audit entry {receipt['audit_index']} of {receipt['tree_size']}, "
            f"leaf {receipt['leaf_hash'][:16]}…"
        )
