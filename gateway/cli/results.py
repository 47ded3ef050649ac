"""A job's result as the CLI prints it: sorted by its group columns, numbers right-aligned,
dp estimates as `29,273 ± 11` (half the 95 % interval), withheld cells with their rule, and
the receipt; or the whole answer as JSON, or the rows as CSV (dp: with `<column>_lower` and
`<column>_upper`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway.cli.output import CliError, console
from gateway.cli.render import Col, Format, safe_json, say, table, write_csv


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numeric(rows: list[list[Any]], i: int) -> bool:
    values = [r[i] for r in rows if r[i] is not None]
    return bool(values) and all(_is_number(v) for v in values)


def _sort_key(value: object) -> tuple[int, Any]:
    if value is None:
        return (2, "")
    return (0, value) if _is_number(value) else (1, str(value))


def ordered(body: dict[str, Any]) -> tuple[list[str], list[int], list[list[Any]], list[bool]]:
    """Columns, the original index of each row in display order, rows and numeric flags."""
    columns: list[str] = body.get("columns") or []
    rows: list[list[Any]] = body.get("rows") or []
    numeric = [_numeric(rows, i) for i in range(len(columns))]
    intervals = body.get("intervals") or {}
    keys = [i for i, c in enumerate(columns) if not numeric[i] and c not in intervals]
    order = sorted(range(len(rows)), key=lambda r: [_sort_key(rows[r][i]) for i in keys])
    return columns, order, rows, numeric


def _number(value: object, decimals: int) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{decimals}f}"
    return str(value)


def _with_interval(value: object, pair: list[float] | None) -> str:
    if value is None:
        return "–"  # no estimate (a mean whose group's noisy count is not positive)
    if pair is None:
        return _number(value, 2)
    half = (pair[1] - pair[0]) / 2
    decimals = 0 if half >= 1 else 2
    return f"{_number(float(value), decimals)} ± {half:,.{decimals}f}"  # type: ignore[arg-type]


def result_table(body: dict[str, Any]) -> Any:
    columns, order, rows, numeric = ordered(body)
    intervals = body.get("intervals") or {}
    cols = [Col(c, lambda r: r, number=numeric[i] or c in intervals) for i, c in enumerate(columns)]
    shown = []
    for r in order:
        cells = []
        for i, c in enumerate(columns):
            value = rows[r][i]
            if c in intervals:
                cells.append(_with_interval(value, intervals[c][r]))
            elif numeric[i] and value is not None:
                cells.append(_number(value, 2))
            else:
                cells.append(value)
        shown.append(cells)
    title = f"job {body['job']['id']} — {body['status']}"
    if intervals:
        title += " (dp: ± half the 95 % interval)"
    return table(title, cols, shown)


def csv_rows(body: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    columns, order, rows, _ = ordered(body)
    intervals = body.get("intervals") or {}
    header: list[str] = []
    for c in columns:
        header += [c, f"{c}_lower", f"{c}_upper"] if c in intervals else [c]
    out = []
    for r in order:
        line: list[Any] = []
        for i, c in enumerate(columns):
            line.append(rows[r][i])
            if c in intervals:
                pair = intervals[c][r]
                line += [None, None] if pair is None else list(pair)
        out.append(line)
    return header, out


def print_result(body: dict[str, Any], fmt: Format = Format.TABLE) -> None:
    if fmt is Format.JSON:
        print(safe_json(body))
        return
    if fmt is Format.CSV:
        write_csv(*csv_rows(body))
        return
    if "columns" in body:
        console.print(result_table(body))
    withheld = body.get("withheld", [])
    if withheld:
        say(f"withheld: {len(withheld)} cell(s)")
        for cell in withheld:
            key = ", ".join(f"{k}={v}" for k, v in cell["key"].items())
            say(f"  {key}: {cell['reason']} ({cell['rule']})")
    if body.get("job", {}).get("error"):
        say(f"error: {body['job']['error']}")
    receipt = body.get("receipt")
    if receipt:
        say(
            f"receipt: audit entry {receipt['audit_index']} of {receipt['tree_size']}, "
            f"leaf {receipt['leaf_hash']} (check it: insitu audit receipt FILE, "
            "after --save FILE)"
        )


def save(body: dict[str, Any], path: Path) -> None:
    """The whole answer as JSON (what `insitu audit receipt` checks), or the rows as CSV."""
    try:
        if path.suffix.lower() == ".csv":
            with path.open("w", encoding="utf-8", newline="") as out:
                write_csv(*csv_rows(body), out=out)
        else:
            path.write_text(json.dumps(body, ensure_ascii=False, indent=2) + "\n", "utf-8")
    except OSError:
        raise CliError(f"cannot write {path.name}", 1) from None
