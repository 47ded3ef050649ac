"""Released results as pandas DataFrames.

- `aggregate` and `list`: the released table as it is (one column per output column).
- `dp`: one row per group and measure — the group columns, then `measure`, `estimate`,
  `lower`, `upper` (the 95 % interval the gateway computed with OpenDP; empty for a quantile).
- `verify`: `key`, `matched` (one row per key, in the order asked).

Every frame is a `Released`: a DataFrame that also carries `withheld` (a DataFrame of the
cells disclosure control or key selection withheld, with `rule` and `reason`), `job`,
`receipt`, `result_hash`, `privacy` and `accuracy` (dp), and `raw` (the gateway's JSON).
"""

from __future__ import annotations

from typing import Any, ClassVar

import pandas as pd

WITHHELD_COLUMNS = ["column", "rule", "reason"]


class Released(pd.DataFrame):  # type: ignore[misc]  # pandas ships no types here
    _metadata: ClassVar[list[str]] = [
        "withheld",
        "job",
        "receipt",
        "result_hash",
        "privacy",
        "accuracy",
        "raw",
    ]

    @property
    def _constructor(self) -> type[Released]:
        return Released


def withheld_frame(cells: list[dict[str, Any]]) -> pd.DataFrame:
    rows = [{**(c.get("key") or {}), **{k: c.get(k) for k in WITHHELD_COLUMNS}} for c in cells]
    if not rows:
        return pd.DataFrame(columns=WITHHELD_COLUMNS)
    return pd.DataFrame(rows)


def dp_rows(body: dict[str, Any]) -> pd.DataFrame:
    columns: list[str] = body["columns"]
    intervals: dict[str, list[Any]] = body.get("intervals") or {}
    keys = [c for c in columns if c not in intervals]
    out = []
    for i, row in enumerate(body["rows"]):
        cells = dict(zip(columns, row, strict=True))
        group = {k: cells[k] for k in keys}
        for measure in (c for c in columns if c in intervals):
            pair = intervals[measure][i]
            out.append(
                {
                    **group,
                    "measure": measure,
                    "estimate": cells[measure],
                    "lower": None if pair is None else pair[0],
                    "upper": None if pair is None else pair[1],
                }
            )
    frame = pd.DataFrame(out, columns=[*keys, "measure", "estimate", "lower", "upper"])
    for column in ("estimate", "lower", "upper"):
        frame[column] = pd.to_numeric(frame[column])
    return frame


def verify_rows(body: dict[str, Any], keys: list[str]) -> pd.DataFrame:
    if body.get("columns") != ["key_index", "matched"]:
        return pd.DataFrame(body.get("rows") or [], columns=body.get("columns") or [])
    rows = sorted(body["rows"], key=lambda r: int(r[0]))
    return pd.DataFrame(
        {"key": [keys[int(i) - 1] for i, _ in rows], "matched": [bool(m) for _, m in rows]}
    )


def released(body: dict[str, Any], *, keys: list[str] | None = None) -> Released:
    """The frame of a finished job's result body."""
    if "intervals" in body:
        frame = dp_rows(body)
    elif keys is not None:
        frame = verify_rows(body, keys)
    else:
        frame = pd.DataFrame(body.get("rows") or [], columns=body.get("columns") or [])
    result = Released(frame)
    result.withheld = withheld_frame(body.get("withheld") or [])
    result.job = body.get("job") or {}
    result.receipt = body.get("receipt")
    result.result_hash = body.get("result_hash")
    result.privacy = body.get("privacy")
    result.accuracy = body.get("accuracy")
    result.raw = body
    return result
