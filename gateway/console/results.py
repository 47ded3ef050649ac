"""A released result as the console shows it: rows sorted by their keys, numbers right-aligned
with thousands separators, a DP estimate with ± half its interval and the interval itself,
each withheld cell with the rule that withheld it and why."""

from __future__ import annotations

from typing import Any

RULES = {
    "min_group_size": "fewer contributors than the owner's minimum group size",
    "dominance": "a few contributors dominate the value",
    "secondary": "withheld so the others cannot be subtracted from a total",
    "key_selection": "the group's noisy count did not pass the key-selection threshold",
}


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "" if value is None else str(value)
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def view(result: dict[str, Any]) -> dict[str, Any]:
    columns = list(result.get("columns") or [])
    intervals = result.get("intervals") or {}
    rows = []
    for i, row in enumerate(result.get("rows") or []):
        cells = []
        for column, value in zip(columns, row, strict=False):
            pair = (intervals.get(column) or [None] * (i + 1))[i] if column in intervals else None
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            cell: dict[str, Any] = {"text": _number(value), "numeric": numeric}
            if pair is not None:
                low, high = pair
                cell["text"] = f"{value:,.0f}"
                cell["plusminus"] = f"± {(high - low) / 2:,.0f}"
                cell["interval"] = f"95 % interval {low:,.0f} to {high:,.0f}"
            cells.append(cell)
        rows.append(cells)
    rows.sort(key=lambda cells: [c["text"] for c in cells if not c["numeric"]])
    withheld = [
        {
            "key": ", ".join(f"{k} = {v}" for k, v in (cell.get("key") or {}).items()),
            "column": cell.get("column") or "",
            "rule": cell.get("rule") or "",
            "reason": cell.get("reason") or RULES.get(cell.get("rule") or "", ""),
        }
        for cell in result.get("withheld") or []
    ]
    return {
        "columns": columns,
        "rows": rows,
        "withheld": withheld,
        "dp": bool(intervals),
        "privacy": result.get("privacy"),
        "disclosure": result.get("disclosure"),
    }
