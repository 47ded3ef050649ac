"""The command tree."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from gateway.cli.output import CliError
from gateway.cli.render import DEFAULT, Format, safe_json

app = typer.Typer(
    name="insitu",
    help="Data stays home: approved query templates run beside the data; only results leave.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, pwsh)
)
token_app = typer.Typer(help="Local token issuer.", no_args_is_help=True)
dataset_app = typer.Typer(help="The catalogue of datasets.", no_args_is_help=True)
template_app = typer.Typer(help="Query templates and their approval.", no_args_is_help=True)
job_app = typer.Typer(help="Jobs: run an approved template.", no_args_is_help=True)
policy_app = typer.Typer(help="Casbin policy.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
budget_app = typer.Typer(help="Privacy budgets.", no_args_is_help=True)
open_app = typer.Typer(help="Open results: publish released results (开放).", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys of the open API.", no_args_is_help=True)
findings_app = typer.Typer(help="Comparison findings routed to you (比对).", no_args_is_help=True)
for sub, name in (
    (token_app, "token"),
    (dataset_app, "dataset"),
    (template_app, "template"),
    (job_app, "job"),
    (policy_app, "policy"),
    (audit_app, "audit"),
    (budget_app, "budget"),
    (findings_app, "findings"),
    (open_app, "open"),
    (apikey_app, "apikey"),
):
    app.add_typer(sub, name=name)

OutputOpt = Annotated[
    Format | None,
    typer.Option(
        "--output",
        help="table, json or csv (json and csv print full values). Default: table for "
        "lists, json for a single object, or the root command's --output.",
        case_sensitive=False,
    ),
]


@app.callback()
def root(
    output: Annotated[
        Format | None,
        typer.Option(
            "--output",
            help="Output of every list and show command: table, json or csv.",
            case_sensitive=False,
        ),
    ] = None,
) -> None:
    """Data stays home: approved query templates run beside the data; only results leave."""
    DEFAULT["format"] = output


HomeOpt = Annotated[
    Path | None, typer.Option("--home", help="Home directory (default $INSITU_HOME or ./.insitu).")
]


def print_json(data: Any) -> None:
    """Full JSON on stdout; control and bidi characters as JSON escapes (never raw)."""
    sys.stdout.write(safe_json(data) + "\n")


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
