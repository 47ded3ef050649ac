"""One-line errors and exit codes for the CLI."""

from __future__ import annotations

import sys
from typing import NoReturn

from rich.console import Console

console = Console()
errors = Console(stderr=True)


class CliError(Exception):
    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int) -> NoReturn:
    errors.print(f"insitu: {message}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(code)
