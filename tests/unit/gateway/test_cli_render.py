"""The CLI's renderer: free text reaches a terminal with its control, bidi and format
characters shown, never acted on (issue 15); JSON keeps the value exact."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from gateway.cli.render import Col, col, safe, safe_json, table, unsafe

EVIL = "a\x1b[2Jb\x07\x9b\u202eexe.txt\u200b\u2066\u2069\u061c\u200e\u200f\u2028\x7f\n\\z"


def test_safe_writes_every_unsafe_character_visibly() -> None:
    shown = safe(EVIL)
    assert not [ch for ch in shown if unsafe(ch)]
    assert shown == (
        "a\\x1b[2Jb\\x07\\x9b\\u202eexe.txt\\u200b\\u2066\\u2069\\u061c\\u200e\\u200f"
        "\\u2028\\x7f\\x0a\\\\z"
    )


def test_safe_leaves_ordinary_text_and_chinese_alone() -> None:
    assert safe("有条件共享 district-7 ±") == "有条件共享 district-7 ±"


@pytest.mark.parametrize(
    "ch", list("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
)
def test_every_bidi_control_the_issue_names_is_unsafe(ch: str) -> None:
    assert unsafe(ch)


def test_safe_json_keeps_the_value_and_prints_no_unsafe_character() -> None:
    text = safe_json({"purpose": EVIL, "n": 1})
    assert not [ch for ch in text if ch != "\n" and unsafe(ch)]
    assert json.loads(text) == {"purpose": EVIL, "n": 1}


def test_a_table_cell_is_text_not_markup_and_ids_are_whole() -> None:
    out = io.StringIO()
    console = Console(file=out, width=60, color_system=None)
    ident = "0390ff8b-9f32-483b-96ac-354f9759be6a"
    rendered = table(None, [col("id", ident=True), Col("title", lambda r: r)],
                     [[ident, "[bold red]x[/] " + EVIL + " long words " * 4]])  # fmt: skip
    console.print(rendered)
    assert ident in out.getvalue()
    assert "[bold red]x[/]" in out.getvalue()
    assert "\x1b" not in out.getvalue() and "\u202e" not in out.getvalue()
