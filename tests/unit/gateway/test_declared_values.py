"""A public column may declare its domain; nothing else may."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.catalogue.documents import MAX_DECLARED_VALUES, ColumnSpec


def test_a_public_column_declares_strings_or_integers() -> None:
    col = ColumnSpec(name="district", type="VARCHAR", sensitivity="public", values=["a", 2])
    assert col.values == ["a", 2]


@pytest.mark.parametrize("sensitivity", ["identifier", "quasi_identifier", "sensitive"])
def test_only_public_columns_declare_values(sensitivity: str) -> None:
    with pytest.raises(ValidationError, match="only a public column"):
        ColumnSpec(name="x", type="VARCHAR", sensitivity=sensitivity, values=["a"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "values",
    [[], ["a", "a"], [True], [1.5], [""], ["x" * 129], ["a"] * (MAX_DECLARED_VALUES + 1)],
)
def test_bad_declared_values_are_refused(values: list[object]) -> None:
    with pytest.raises(ValidationError):
        ColumnSpec(name="x", type="VARCHAR", sensitivity="public", values=values)  # type: ignore[arg-type]
