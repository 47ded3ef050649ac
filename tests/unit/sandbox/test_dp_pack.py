"""Packed sums (``s · 2^32 + c`` in one aggregate): the split is exact, the engine's SUM of the
per-row terms packs exactly (real DuckDB), and anything unexpected is refused."""

from __future__ import annotations

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import ResultTable
from sandbox.dp_plan import PACK_MAX_TERM, PACK_SHIFT, unpack
from sandbox.errors import ExecutionError

COLUMNS = ("district", "n", "s0", "c0", "s1", "c1")


def packed_table(rows: list[tuple[object, ...]]) -> ResultTable:
    return ResultTable(
        ("district", "n", "p0", "p1"), ("VARCHAR", "BIGINT", "HUGEINT", "HUGEINT"), tuple(rows)
    )


@given(
    st.lists(
        st.tuples(st.integers(-(2**80), 2**80), st.integers(0, 2**PACK_SHIFT - 1), st.booleans()),
        min_size=1,
        max_size=8,
    )
)
def test_unpack_splits_every_sum_and_count_exactly(cells: list[tuple[int, int, bool]]) -> None:
    rows = [
        (f"d{i}", c, s * 2**PACK_SHIFT + c, None if empty else -s * 2**PACK_SHIFT)
        for i, (s, c, empty) in enumerate(cells)
    ]
    out = unpack(packed_table(rows), COLUMNS)
    assert out.columns == COLUMNS
    assert out.types == ("VARCHAR", "BIGINT", "HUGEINT", "BIGINT", "HUGEINT", "BIGINT")
    for (s, c, empty), row in zip(cells, out.rows, strict=True):
        assert row[1:4] == (c, s, c)
        assert row[4:] == ((0, 0) if empty else (-s, 0))  # NULL: a group of NULL values only


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(st.none(), st.integers(-PACK_MAX_TERM, PACK_MAX_TERM)),
        min_size=0,
        max_size=200,
    )
)
def test_the_engines_packed_sum_is_the_sum_and_the_count(terms: list[int | None]) -> None:
    with duckdb.connect() as con:
        con.execute("CREATE TABLE t (v BIGINT)")
        if terms:
            con.executemany("INSERT INTO t VALUES (?)", [(v,) for v in terms])
        (packed,) = con.execute(f"SELECT SUM(v * {2**PACK_SHIFT} + 1) FROM t").fetchone() or ()
    table = ResultTable(("p0",), ("HUGEINT",), ((packed,),))
    out = unpack(table, ("s0", "c0"))
    values = [v for v in terms if v is not None]
    assert out.rows == ((sum(values), len(values)),)


def test_a_table_that_does_not_match_the_full_columns_is_refused() -> None:
    good = packed_table([("d0", 3, 5 * 2**32 + 2, 7 * 2**32 + 3)])
    assert unpack(good, COLUMNS).rows == (("d0", 3, 5, 2, 7, 3),)
    plain = ResultTable(COLUMNS, ("VARCHAR", *["BIGINT"] * 5), (("d0", 1, 2, 3, 4, 5),))
    assert unpack(plain, COLUMNS) is plain
    extra = ResultTable(
        ("district", "n", "p0", "p1", "x"),
        ("VARCHAR", "BIGINT", "HUGEINT", "HUGEINT", "X"),
        (("d0", 3, 1, 1, 9),),
    )
    for bad_table, columns in (
        (good, (*COLUMNS, "s2", "c2")),  # no p2
        (good, ("district", "n", "s0", "c0")),  # p1 left over
        (extra, COLUMNS),  # an unknown column
        (packed_table([("d0", 3, "5", 1)]), COLUMNS),  # not an integer
        (packed_table([("d0", 3, 2.5, 1)]), COLUMNS),
        (packed_table([("d0", 3, True, 1)]), COLUMNS),
    ):
        with pytest.raises(ExecutionError):
            unpack(bad_table, columns)
