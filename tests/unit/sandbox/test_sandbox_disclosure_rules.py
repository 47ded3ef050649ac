"""Dominance, p %, secondary suppression, rounding and distinct-unit counts."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import DisclosureRules, ResultTable, apply_disclosure
from sandbox.disclosure.rules import Contributors, GroupKey

OFF = {"dominance_n": None, "dominance_k": None, "p_percent": None, "secondary": False}


def table(*rows: tuple[object, ...]) -> ResultTable:
    return ResultTable(("district", "n", "capital"), ("VARCHAR", "BIGINT", "DOUBLE"), rows)


def key(district: str) -> GroupKey:
    return (("district", district),)


def contributors(units: int, total: float, *top: float) -> Contributors:
    return Contributors(units=units, magnitudes={"capital": (total, tuple(top))})


def test_dominance_withholds_a_cell_two_contributors_dominate() -> None:
    rules = DisclosureRules(**{**OFF, "dominance_n": 2, "dominance_k": 0.9})
    result = apply_disclosure(
        table(("a", 20, 1000.0), ("b", 20, 1000.0)),
        count_column="n",
        group_columns=("district",),
        rules=rules,
        contributors={
            key("a"): contributors(20, 1000.0, 600.0, 300.0),  # 90 %: withheld
            key("b"): contributors(20, 1000.0, 600.0, 299.0),  # 89.9 %: released
        },
    )
    assert [row[0] for row in result.rows] == ["b"]
    assert [(dict(c.key), c.rule) for c in result.withheld] == [({"district": "a"}, "dominance")]


def test_p_percent_withholds_when_the_second_largest_can_estimate_the_largest() -> None:
    rules = DisclosureRules(**{**OFF, "p_percent": 10.0})
    result = apply_disclosure(
        table(("a", 20, 1000.0), ("b", 20, 1000.0)),
        count_column="n",
        group_columns=("district",),
        rules=rules,
        contributors={
            # remainder 1000 - 500 - 451 = 49 < 10 % of 500: withheld
            key("a"): contributors(20, 1000.0, 500.0, 451.0),
            # remainder 1000 - 500 - 440 = 60 >= 50: released
            key("b"): contributors(20, 1000.0, 500.0, 440.0),
        },
    )
    assert [row[0] for row in result.rows] == ["b"]
    assert [(dict(c.key), c.rule) for c in result.withheld] == [({"district": "a"}, "p_percent")]


def test_min_group_size_counts_distinct_units_not_rows() -> None:
    # 40 rows, but all from 3 enterprises: the released count says 40, the rule sees 3.
    result = apply_disclosure(
        table(("a", 40, 1.0)),
        count_column="n",
        group_columns=("district",),
        rules=DisclosureRules(**OFF),
        contributors={key("a"): contributors(3, 1.0, 0.4, 0.3)},
    )
    assert result.rows == ()
    assert result.withheld[0].rule == "min_group_size"


def test_a_group_without_contributor_figures_is_withheld() -> None:
    result = apply_disclosure(
        table(("a", 40, 1.0)),
        count_column="n",
        group_columns=("district",),
        rules=DisclosureRules(**OFF),
        contributors={},
    )
    assert result.rows == ()


def test_secondary_suppression_protects_a_lone_withheld_cell_in_a_one_way_table() -> None:
    result = apply_disclosure(
        table(("a", 3, 1.0), ("b", 50, 1.0), ("c", 12, 1.0), ("d", 30, 1.0)),
        count_column="n",
        group_columns=("district",),
        rules=DisclosureRules(dominance_n=None, dominance_k=None, p_percent=None),
    )
    assert sorted(row[0] for row in result.rows) == ["b", "d"]
    rules = {dict(c.key)["district"]: c.rule for c in result.withheld}
    assert rules == {"a": "min_group_size", "c": "secondary"}  # c is the next smallest


def test_secondary_suppression_breaks_ties_by_key_not_by_row_order() -> None:
    """Engines return groups in different orders (DuckDB and Spark do): the same table must
    withhold the same cells whatever the order, so a tie goes to the smallest key."""
    rows = [("a", 3, 1.0), ("b", 50, 1.0), ("c", 12, 1.0), ("d", 12, 1.0), ("e", 30, 1.0)]
    chosen = set()
    for ordered in (rows, rows[::-1]):
        result = apply_disclosure(
            table(*ordered),
            count_column="n",
            group_columns=("district",),
            rules=DisclosureRules(dominance_n=None, dominance_k=None, p_percent=None),
        )
        chosen.add(tuple(sorted(dict(c.key)["district"] for c in result.withheld)))
    assert chosen == {("a", "c")}


def two_way(counts: dict[tuple[str, str], int]) -> ResultTable:
    rows = tuple((d, i, n) for (d, i), n in counts.items())
    return ResultTable(("district", "industry", "n"), ("VARCHAR", "VARCHAR", "BIGINT"), rows)


def test_secondary_suppression_in_a_two_way_table_leaves_no_line_with_one_withheld_cell() -> None:
    counts = {
        ("a", "x"): 3, ("a", "y"): 40, ("a", "z"): 25,
        ("b", "x"): 30, ("b", "y"): 11, ("b", "z"): 50,
        ("c", "x"): 20, ("c", "y"): 60, ("c", "z"): 15,
    }  # fmt: skip
    result = apply_disclosure(
        two_way(counts),
        count_column="n",
        group_columns=("district", "industry"),
        rules=DisclosureRules(dominance_n=None, dominance_k=None, p_percent=None),
    )
    withheld = {(dict(c.key)["district"], dict(c.key)["industry"]) for c in result.withheld}
    assert ("a", "x") in withheld and len(withheld) >= 4
    assert_no_cell_recomputable(counts, withheld)


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.tuples(st.sampled_from("abcd"), st.sampled_from("wxyz")),
        st.integers(min_value=1, max_value=60),
        min_size=1,
    )
)
def test_no_withheld_cell_can_be_recomputed_from_line_totals(
    counts: dict[tuple[str, str], int],
) -> None:
    result = apply_disclosure(
        two_way(counts),
        count_column="n",
        group_columns=("district", "industry"),
        rules=DisclosureRules(dominance_n=None, dominance_k=None, p_percent=None),
    )
    withheld = {(dict(c.key)["district"], dict(c.key)["industry"]) for c in result.withheld}
    assert_no_cell_recomputable(counts, withheld)
    assert all(counts[cell] >= 10 for cell in counts if cell not in withheld)


def assert_no_cell_recomputable(counts: dict[tuple[str, str], int], withheld: set) -> None:
    """Every row/column line with more than one cell has zero or at least two withheld."""
    for axis in (0, 1):
        lines: dict[str, list[tuple[str, str]]] = {}
        for cell in counts:
            lines.setdefault(cell[1 - axis], []).append(cell)
        for cells in lines.values():
            hidden = [c for c in cells if c in withheld]
            assert len(hidden) != 1 or len(cells) == 1, (cells, hidden)


def test_without_secondary_suppression_the_lone_cell_is_recomputable() -> None:
    """The check above fails when the rule is off (so it tests the rule)."""
    counts = {("a", "x"): 3, ("a", "y"): 40, ("b", "x"): 30, ("b", "y"): 11}
    result = apply_disclosure(
        two_way(counts),
        count_column="n",
        group_columns=("district", "industry"),
        rules=DisclosureRules(**OFF),
    )
    withheld = {(dict(c.key)["district"], dict(c.key)["industry"]) for c in result.withheld}
    assert withheld == {("a", "x")}


def test_rounding_rounds_counts_and_sums_to_the_base() -> None:
    result = apply_disclosure(
        table(("a", 12, 1032.4), ("b", 13, 7.5)),
        count_column="n",
        group_columns=("district",),
        rules=DisclosureRules(**{**OFF, "rounding_base": 5}),
    )
    assert result.rows == (("a", 10, 1030.0), ("b", 15, 10.0))


def test_withheld_cells_are_listed_by_key_and_rule_only() -> None:
    result = apply_disclosure(
        table(("a", 3, 123456.0), ("b", 50, 1.0), ("c", 40, 2.0)),
        count_column="n",
        group_columns=("district",),
        rules=DisclosureRules(dominance_n=None, dominance_k=None, p_percent=None),
    )
    for cell in result.withheld:
        text = repr(cell)
        assert "123456" not in text and "3," not in text.replace("(", "")
    assert [c.rule for c in result.withheld] == ["min_group_size", "secondary"]


def test_rules_run_in_pipeline_order() -> None:
    rules = DisclosureRules()
    result = apply_disclosure(
        table(*((d, 30, 10.0) for d in "abcd")),
        count_column="n",
        group_columns=("district",),
        rules=rules,
        contributors={
            key("a"): contributors(30, 100.0, 10.0, 9.0),
            key("b"): contributors(30, 100.0, 95.0, 1.0),
            key("c"): contributors(30, 100.0, 10.0, 9.0),
            key("d"): contributors(30, 100.0, 10.0, 9.0),
        },
        differencing={key("c"): "differs from an earlier cell by fewer than 10 units"},
    )
    assert [c.rule for c in result.withheld] == ["dominance", "differencing"]
    assert list(itertools.chain(*(r[:1] for r in result.rows))) == ["a", "d"]
