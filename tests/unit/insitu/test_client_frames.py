"""Released results as DataFrames: dp rows with their intervals, withheld cells apart."""

from __future__ import annotations

from insitu.client.frames import released

DP_BODY = {
    "job": {"id": "j"},
    "status": "released",
    "columns": ["district", "residents", "income"],
    "rows": [["a", 120, 3000.5], ["b", 80, None]],
    "intervals": {"residents": [[110, 130], [70, 90]], "income": [[2900, 3100], None]},
    "withheld": [{"key": {"district": "c"}, "column": None, "rule": "key_selection",
                  "reason": "below the threshold"}],
}  # fmt: skip


def test_a_dp_result_has_one_row_per_group_and_measure_with_its_interval() -> None:
    frame = released(DP_BODY)
    assert list(frame.columns) == ["district", "measure", "estimate", "lower", "upper"]
    assert frame.values.tolist()[:2] == [["a", "residents", 120, 110, 130],
                                         ["a", "income", 3000.5, 2900, 3100]]  # fmt: skip
    assert frame.iloc[3].isna()[["estimate", "lower", "upper"]].all()
    assert frame.withheld.to_dict("records") == [
        {"district": "c", "column": None, "rule": "key_selection", "reason": "below the threshold"}
    ]


def test_a_slice_keeps_the_withheld_cells_and_the_job() -> None:
    frame = released(DP_BODY)
    part = frame[frame.measure == "residents"]
    assert part.job == {"id": "j"} and len(part.withheld) == 1


def test_verify_answers_map_back_to_the_keys_in_order() -> None:
    body = {"columns": ["key_index", "matched"], "rows": [[2, False], [1, True]]}
    assert released(body, keys=["k1", "k2"]).values.tolist() == [["k1", True], ["k2", False]]
