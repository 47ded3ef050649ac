"""The `insitu` command line (typer + rich).

Local commands (`init`, `serve`, `token issue`, `audit verify`, `demo`) work on the home;
client commands talk to a gateway at ``INSITU_URL`` with ``INSITU_TOKEN``.
Exit codes: 0 ok, 1 denied or failed, 2 usage or bad input. Errors are one line on stderr.
"""

from __future__ import annotations

import sys

import typer
from typer.exceptions import TyperException

# Importing a command module registers its commands on the tree in gateway.cli.app.
from gateway.cli import (  # noqa: F401
    audit_cmds,
    budget_cmds,
    console_cmds,
    dataset_cmds,
    finding_cmds,
    job_cmds,
    local,
    login_cmds,
    open_cmds,
    ops_cmds,
    policy_cmds,
    purpose_cmds,
    template_cmds,
)
from gateway.cli.app import app
from gateway.cli.output import CliError, errors, fail


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except CliError as exc:
        fail(str(exc), exc.code)
    except typer.Abort:
        fail("aborted", 1)
    except TyperException as exc:  # click's usage errors (typer vendors click)
        format_message = getattr(exc, "format_message", None)
        message = format_message() if callable(format_message) else exc.message
        if "\n" in message:  # a command group called without a command: its help
            errors.print(message, markup=False, highlight=False)
            sys.exit(2)
        fail(message, exc.exit_code)
    except Exception as exc:  # anything unexpected: one line, no stack trace
        fail(f"internal error ({type(exc).__name__})", 1)
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["app", "main"]
