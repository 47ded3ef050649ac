"""How the CLI prints what it lists and shows: `--output table|json|csv`, full ids, escaped text.

- **table** (rich): id columns never wrap or shorten — the other columns wrap instead;
  numbers are right-aligned. **json**: the gateway's objects in full. **csv**: a header row,
  then one row per item, full values.
- **Terminal escapes** (issue 15): text that others wrote — purpose texts, titles, notes,
  reasons, audit details, result values — may carry control characters (C0, DEL, C1: an ESC
  can rewrite the screen or the window title) or bidi and other invisible format characters
  (U+202E turns `exe.txt` into `txt.exe` on screen). Tables and CSV show each one visibly
  (`\\x1b`, `\\u202e`; a backslash as `\\\\`); JSON writes them as JSON escapes (`\\u001b`,
  `\\u202e`), so the value is exact yet the terminal never interprets it. Cells are rich
  `Text`, so `[bold]` in a title is shown, not applied.
"""

from __future__ import annotations

import csv
import json
import sys
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gateway.cli.output import console


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


#: Set by the root command's `--output`; a command's own `--output` wins.
DEFAULT: dict[str, Format | None] = {"format": None}

#: Bidi controls and marks the issue names, beyond what the Unicode categories below catch.
BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def unsafe(ch: str) -> bool:
    """A character a terminal would act on or hide: controls (Cc), format characters such as
    bidi overrides and zero-width marks (Cf), line and paragraph separators (Zl, Zp)."""
    return ch in BIDI or unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"}


def _visible(ch: str) -> str:
    code = ord(ch)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


def safe(value: object) -> str:
    """`value` as text a terminal shows as it is: unsafe characters written out visibly."""
    text = "" if value is None else str(value)
    if not any(unsafe(ch) or ch == "\\" for ch in text):
        return text
    return "".join("\\\\" if ch == "\\" else _visible(ch) if unsafe(ch) else ch for ch in text)


def safe_json(data: Any, *, indent: int | None = 2) -> str:
    """JSON whose strings keep every character, with the unsafe ones as JSON escapes."""
    text = json.dumps(data, ensure_ascii=False, indent=indent, default=str)
    # json.dumps escapes C0 controls inside strings; the only raw one left is the indenting
    # newline. DEL, C1 and format characters pass through it raw: escape those.
    return "".join(
        f"\\u{ord(ch):04x}" if ch != "\n" and unsafe(ch) and ord(ch) < 0x10000 else ch
        for ch in text
    )


def choose(option: Format | None, default: Format) -> Format:
    return option or DEFAULT["format"] or default


@dataclass(frozen=True, slots=True)
class Col:
    """A column: its header, how to read it from an item, and whether it is an id (never
    wrapped or shortened) or a number (right-aligned)."""

    header: str
    get: Callable[[dict[str, Any]], Any]
    ident: bool = False
    number: bool = False


def col(header: str, key: str | None = None, **kwargs: Any) -> Col:
    name = key or header

    def get(item: dict[str, Any]) -> Any:
        value: Any = item
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    return Col(header, get, **kwargs)


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return safe(json.dumps(value, ensure_ascii=False, default=str))
    return safe(value)


def _display(value: Any, number: bool) -> str:
    """A table cell: numbers readable (full values go to json and csv), text escaped."""
    if number and isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    if number and isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return _cell(value)


def _fits(columns: Sequence[Col], rows: list[list[str]], width: int) -> bool:
    """Whether ids fit at full width with room for at least a short word in every other
    column (rich would otherwise squeeze those columns to nothing)."""
    need = 1
    for i, c in enumerate(columns):
        longest = max([len(c.header), *(len(r[i]) for r in rows)])
        need += 3 + (longest if c.ident or c.number else min(longest, max(len(c.header), 8)))
    return need <= width


def table(title: str | None, columns: Sequence[Col], rows: Iterable[Sequence[Any]]) -> Any:
    """A rich table of plain-text cells: ids at full width, numbers right-aligned; when the
    terminal is too narrow for that, one block of `field: value` lines per row instead."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    cells = [[_display(v, c.number) for v, c in zip(row, columns, strict=True)] for row in rows]
    heading = [Text(safe(title), style="bold")] if title else []
    if not _fits(columns, cells, console.width):
        width = max(len(c.header) for c in columns)
        blocks: list[Any] = list(heading)
        for row in cells:
            blocks += [Text(f"{c.header:<{width}}  {v}") for c, v in zip(columns, row, strict=True)]
            blocks.append(Text(""))
        return Group(*blocks)
    out = Table()
    for i, c in enumerate(columns):
        widest = max([len(c.header), *(len(r[i]) for r in cells)]) if c.ident else None
        out.add_column(
            Text(c.header),
            justify="right" if c.number else "left",
            no_wrap=c.ident,
            min_width=widest,
            overflow="fold",
        )
    for r in cells:
        out.add_row(*(Text(v) for v in r))
    return Group(*heading, out)


def emit(
    items: Sequence[dict[str, Any]],
    columns: Sequence[Col],
    fmt: Format,
    *,
    title: str | None = None,
    raw: Any = None,
) -> None:
    """Print a list: a table, the items as JSON (or `raw`, the whole answer), or CSV."""
    if fmt is Format.JSON:
        sys.stdout.write(safe_json(items if raw is None else raw) + "\n")
    elif fmt is Format.CSV:
        write_csv([c.header for c in columns], ([c.get(i) for c in columns] for i in items))
    else:
        console.print(table(title, columns, ([c.get(i) for c in columns] for i in items)))


def write_csv(header: Sequence[str], rows: Iterable[Sequence[Any]], out: Any = None) -> None:
    writer = csv.writer(out or sys.stdout, lineterminator="\n")
    writer.writerow([safe(h) for h in header])
    for row in rows:
        writer.writerow(["" if v is None else _cell(v) for v in row])


def show(item: dict[str, Any], fmt: Format) -> None:
    """Print one object: JSON, or its fields as a two-column table / CSV."""
    if fmt is Format.JSON:
        sys.stdout.write(safe_json(item) + "\n")
        return
    fields = [col("field", ident=True), col("value")]
    pairs = list(item.items())
    if fmt is Format.CSV:
        write_csv(["field", "value"], pairs)
    else:
        console.print(table(None, fields, pairs))


def say(text: str) -> None:
    """One line of the CLI's own words around free text: escaped, no markup."""
    console.print(safe(text), markup=False, highlight=False, soft_wrap=True)
