"""Catalogue facts the sandbox needs: dataset ids, column names and their sensitivity.

These are trusted inputs (from the gateway's catalogue), still validated on construction
because dataset ids and column names end up as identifiers in SQL the sandbox writes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from sandbox.errors import TemplateRejected

_PART = re.compile(r"[a-z][a-z0-9_]{0,62}")
COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# Schema names DuckDB (or Spark) already uses; a department may not be called that.
RESERVED_SCHEMAS = frozenset(
    {"main", "temp", "system", "information_schema", "pg_catalog", "memory", "default"}
)


def dataset_id_problem(dataset_id: object) -> str | None:
    """Why ``dataset_id`` is not a valid ``<department>.<name>`` id, or None."""
    if not isinstance(dataset_id, str):
        return "must be a string like 'market.enterprise_registry'"
    parts = dataset_id.split(".")
    if len(parts) != 2 or not all(_PART.fullmatch(p) for p in parts):
        return (
            f"'{dataset_id[:80]}' must be '<department>.<name>', both parts lowercase letters, "
            "digits and '_' starting with a letter"
        )
    if parts[0] in RESERVED_SCHEMAS:
        return f"department '{parts[0]}' is a reserved schema name; choose another"
    return None


class Sensitivity(StrEnum):
    IDENTIFIER = "identifier"
    QUASI_IDENTIFIER = "quasi_identifier"
    SENSITIVE = "sensitive"
    PUBLIC = "public"


@dataclass(frozen=True, slots=True)
class Column:
    """One catalogue column: its name, DuckDB type name, sensitivity, and whether its values
    concern natural persons (``personal``; True unless the owner says otherwise)."""

    name: str
    type: str
    sensitivity: Sensitivity
    personal: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not COLUMN_NAME.fullmatch(self.name):
            raise TemplateRejected(
                f"column name {str(self.name)[:80]!r} must be letters, digits and '_' "
                "(not starting with a digit), at most 63 characters"
            )
        if not isinstance(self.type, str) or not self.type.strip():
            raise TemplateRejected(f"column '{self.name}' needs a type such as VARCHAR")
        try:  # accept the plain string from YAML as well as the enum
            object.__setattr__(self, "sensitivity", Sensitivity(self.sensitivity))
        except ValueError:
            allowed = ", ".join(s.value for s in Sensitivity)
            raise TemplateRejected(
                f"column '{self.name}' sensitivity must be one of {allowed}"
            ) from None


@dataclass(frozen=True, slots=True)
class TableSchema:
    """The columns of one catalogue dataset, addressed in SQL as ``<department>.<name>``."""

    dataset_id: str
    columns: tuple[Column, ...]

    def __post_init__(self) -> None:
        problem = dataset_id_problem(self.dataset_id)
        if problem is not None:
            raise TemplateRejected(f"dataset id {problem}")
        if not isinstance(self.columns, tuple) or not self.columns:
            raise TemplateRejected(f"dataset '{self.dataset_id}' needs a tuple of columns")
        seen: set[str] = set()
        for column in self.columns:
            if not isinstance(column, Column):
                raise TemplateRejected(f"dataset '{self.dataset_id}' columns must be Column")
            if column.name.lower() in seen:
                raise TemplateRejected(
                    f"dataset '{self.dataset_id}' lists column '{column.name}' twice "
                    "(names are case-insensitive)"
                )
            seen.add(column.name.lower())

    @property
    def department(self) -> str:
        return self.dataset_id.split(".")[0]

    @property
    def name(self) -> str:
        return self.dataset_id.split(".")[1]

    def column(self, name: str) -> Column | None:
        """The column called ``name`` (case-insensitive), or None."""
        return next((c for c in self.columns if c.name.lower() == name.lower()), None)

    def sensitivity_of(self, column: str) -> Sensitivity | None:
        """The sensitivity of ``column`` (case-insensitive), or None if there is no such column."""
        for c in self.columns:
            if c.name.lower() == column.lower():
                return c.sensitivity
        return None
