"""What an engine returns: a small table of JSON-friendly Python values.

Conversion (``json_value``), chosen so a result survives JSON without loss or surprise:

- None, bool, int, str stay as they are (int may exceed 2**53; JSON allows it);
- Decimal becomes its exact string ("12.50"), never a float;
- finite float stays float; NaN and ±infinity become "NaN", "Infinity", "-Infinity";
- date, datetime and time become ISO 8601 strings; timedelta its ``str``; UUID its string;
- bytes become lowercase hex; lists, tuples and dicts are converted element-wise.

Anything else is a SandboxBug (a type this table has not decided on).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from sandbox.errors import SandboxBug


@dataclass(frozen=True, slots=True)
class ResultTable:
    """Columns, their engine type names, and rows of JSON-friendly values."""

    columns: tuple[str, ...]
    types: tuple[str, ...]
    rows: tuple[tuple[object, ...], ...]

    def __post_init__(self) -> None:
        if len(self.columns) != len(self.types):
            raise SandboxBug("ResultTable needs one type per column")
        if len(set(self.columns)) != len(self.columns):
            raise SandboxBug("ResultTable column names must be unique")
        width = len(self.columns)
        if any(len(row) != width for row in self.rows):
            raise SandboxBug("every ResultTable row needs one value per column")


def json_value(value: object) -> object:
    """``value`` as a JSON-friendly Python value (see the module docstring)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    raise SandboxBug(f"no JSON conversion for result values of type {type(value).__name__}")
