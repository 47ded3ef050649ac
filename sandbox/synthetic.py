"""Synthetic tables generated from a dataset's declared schema, for pre-flight runs.

Approvers see what a template returns before they approve it, without the template touching
the real data: each declared column gets deterministic made-up values of its type --
identifiers unique per row (``<COL>-000001``), public strings from a handful of values
(``<col>_1`` … ``<col>_5``), integers and years in small ranges, dates in 2020-2024. The
values carry no information about any real record.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path

from sandbox.schema import Column, Sensitivity, TableSchema

ROWS = 200
_INTEGER = ("TINYINT", "SMALLINT", "INTEGER", "INT", "BIGINT", "HUGEINT", "UTINYINT",
            "USMALLINT", "UINTEGER", "UBIGINT")  # fmt: skip
_FLOAT = ("DOUBLE", "FLOAT", "REAL", "DECIMAL", "NUMERIC")
_PUBLIC_VALUES = 5


def value(column: Column, row: int, seeds: tuple[str, ...] = ()) -> object:
    """The synthetic value of ``column`` in row ``row`` (0-based).

    ``seeds`` are strings a template compares the column with; a public string column takes
    them in turn with its made-up values, so the template's filters find rows."""
    kind = column.type.upper().split("(")[0].strip()
    name = column.name
    if kind in _INTEGER:
        if "year" in name.lower():
            return 2015 + row % 10
        return row if column.sensitivity is Sensitivity.IDENTIFIER else row % 50
    if kind in _FLOAT:
        return round((row * 37.5) % 1000 + 0.25, 2)
    if kind == "BOOLEAN":
        return row % 2 == 0
    if kind == "DATE":
        return (date(2020, 1, 1) + timedelta(days=(row * 7) % 1800)).isoformat()
    if kind.startswith("TIMESTAMP"):
        return f"{date(2020, 1, 1) + timedelta(days=row % 1800)} 12:00:00"
    if column.sensitivity is Sensitivity.IDENTIFIER:
        return f"{name.upper()}-{row + 1:06d}"
    if column.sensitivity is Sensitivity.PUBLIC:
        pool = (*seeds, *(f"{name}_{i}" for i in range(1, _PUBLIC_VALUES + 1)))
        return pool[row % len(pool)]
    return f"{name}_{row % 97 + 1}"


Seeds = Mapping[str, tuple[str, ...]]


def synthetic_values(
    schema: TableSchema, column: str, rows: int = ROWS, seeds: Seeds | None = None
) -> tuple[object, ...]:
    """The distinct synthetic values of one column, in first-seen order."""
    found = schema.column(column)
    if found is None:
        return ()
    mine = (seeds or {}).get(found.name.lower(), ())
    return tuple(dict.fromkeys(value(found, i, mine) for i in range(rows)))


def write_synthetic_csv(
    schema: TableSchema, path: Path, rows: int = ROWS, seeds: Seeds | None = None
) -> None:
    """Write ``rows`` synthetic rows of ``schema`` as a CSV file with a header."""
    seeds = seeds or {}
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([c.name for c in schema.columns])
        for i in range(rows):
            writer.writerow([value(c, i, seeds.get(c.name.lower(), ())) for c in schema.columns])
