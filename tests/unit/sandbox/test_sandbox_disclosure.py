"""Minimum group size: small groups are withheld by key, the boundary is released."""

from __future__ import annotations

import pytest

from sandbox import DisclosureRules, ResultTable, SandboxBug, WithheldCell, apply_disclosure


def table(*rows: tuple[object, ...]) -> ResultTable:
    return ResultTable(("district", "industry", "n"), ("VARCHAR", "VARCHAR", "BIGINT"), rows)


def test_groups_under_the_threshold_are_withheld_and_listed() -> None:
    result = apply_disclosure(
        table(("a", "retail", 25), ("b", "retail", 3), ("c", "mining", 9)),
        count_column="n",
        group_columns=("district", "industry"),
        rules=DisclosureRules(min_group_size=10, secondary=False),
    )
    assert result.rows == (("a", "retail", 25),)
    assert result.withheld == (
        WithheldCell(
            (("district", "b"), ("industry", "retail")),
            None,
            "min_group_size",
            "fewer than 10 contributors",
        ),
        WithheldCell(
            (("district", "c"), ("industry", "mining")),
            None,
            "min_group_size",
            "fewer than 10 contributors",
        ),
    )
    assert all(3 not in dict(c.key).values() for c in result.withheld)  # counts never shown


def test_group_at_the_threshold_is_released() -> None:
    result = apply_disclosure(
        table(("a", "retail", 10), ("b", "retail", 9)),
        count_column="n",
        group_columns=("district", "industry"),
        rules=DisclosureRules(min_group_size=10, secondary=False),
    )
    assert result.rows == (("a", "retail", 10),)
    assert [dict(c.key)["district"] for c in result.withheld] == ["b"]


def test_group_with_unknown_count_is_withheld() -> None:
    result = apply_disclosure(
        table(("a", "retail", None)),
        count_column="n",
        group_columns=("district", "industry"),
        rules=DisclosureRules(),
    )
    assert result.rows == ()
    assert result.withheld[0].reason == "the number of contributors is unknown"


def test_result_shape_is_kept() -> None:
    result = apply_disclosure(
        table(), count_column="n", group_columns=("district",), rules=DisclosureRules()
    )
    assert (result.columns, result.types, result.rows, result.withheld) == (
        ("district", "industry", "n"),
        ("VARCHAR", "VARCHAR", "BIGINT"),
        (),
        (),
    )


@pytest.mark.parametrize("size", [0, -1, True])
def test_min_group_size_must_be_positive(size: int) -> None:
    with pytest.raises(SandboxBug):
        DisclosureRules(min_group_size=size)


def test_count_column_must_exist_and_hold_integers() -> None:
    with pytest.raises(SandboxBug):
        apply_disclosure(table(), count_column="x", group_columns=(), rules=DisclosureRules())
    with pytest.raises(SandboxBug):
        apply_disclosure(
            table(("a", "r", "12")), count_column="n", group_columns=(), rules=DisclosureRules()
        )
