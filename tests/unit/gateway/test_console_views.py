"""The console's pure parts: typed parameter forms, result views, neutralised text, headers,
and the package data that ships its templates and vendored assets."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

from gateway.console.forms import field_for, values_from
from gateway.console.render import csp, env, neutralise
from gateway.console.results import view
from gateway.console.web import Form
from sandbox import ParameterSpec

ROOT = Path(__file__).resolve().parents[3]


def spec(name: str, **body: object) -> ParameterSpec:
    return ParameterSpec.from_mapping(name, body)


def test_fields_follow_the_domains() -> None:
    year = field_for(spec("year", type="integer", min=2018, max=2025))
    assert (year.widget, year.input_type, year.attrs["min"], year.attrs["max"]) == (
        "number",
        "number",
        "2018",
        "2025",
    )
    assert "2018" in year.rule and "2025" in year.rule
    kind = field_for(spec("kind", type="string", values=["a", "b"]))
    assert (kind.widget, kind.choices) == ("select", ("a", "b"))
    code = field_for(spec("code", type="string", pattern="[A-Z]{2}[0-9]{4}"))
    assert code.attrs["pattern"] == "[A-Z]{2}[0-9]{4}"
    span = field_for(spec("years", type="integer_range", min=2015, max=2030, min_width=3))
    assert span.widget == "range"


def test_form_values_are_typed_as_the_api_takes_them() -> None:
    specs = {
        "year": spec("year", type="integer", min=2018, max=2025),
        "industry": spec("industry", type="string", values=["retail"]),
        "open": spec("open", type="boolean"),
        "years": spec("years", type="integer_range", min=2015, max=2030, min_width=3),
    }
    form = Form(
        {
            "p.year": ["2024"],
            "p.industry": ["retail"],
            "p.years.from": ["2016"],
            "p.years.to": ["2020"],
        }
    )
    assert values_from(specs, form) == {
        "year": 2024,
        "industry": "retail",
        "open": False,
        "years": [2016, 2020],
    }
    # A value that is no integer is passed on as text: validation refuses it with its message.
    assert values_from({"year": specs["year"]}, Form({"p.year": ["20x4"]})) == {"year": "20x4"}


def test_results_are_sorted_with_intervals_and_withheld_cells_explained() -> None:
    shown = view(
        {
            "columns": ["district", "residents"],
            "rows": [["haidian", 29273.28], ["chaoyang", 1200.0]],
            "intervals": {"residents": [[29262.0, 29284.0], None]},
            "withheld": [{"key": {"district": "yanqing"}, "rule": "min_group_size"}],
        }
    )
    assert [r[0]["text"] for r in shown["rows"]] == ["chaoyang", "haidian"]
    haidian = shown["rows"][1][1]
    assert (haidian["text"], haidian["plusminus"]) == ("29,273", "± 11")
    assert shown["rows"][0][1]["text"] == "1,200" and "plusminus" not in shown["rows"][0][1]
    assert shown["withheld"][0]["key"] == "district = yanqing"
    assert "minimum group size" in shown["withheld"][0]["reason"]
    assert shown["dp"] is True


def test_control_and_bidi_characters_are_made_visible() -> None:
    assert neutralise("plain 中文 text") == "plain 中文 text"
    assert neutralise("a\u202eb\u200bc\x07") == "a⟨U+202E⟩b⟨U+200B⟩c⟨U+0007⟩"
    page = env.from_string("{{ v }}|{{ v|e }}").render(v="<b>\u2066</b>")
    assert page == "&lt;b&gt;⟨U+2066⟩&lt;/b&gt;|&lt;b&gt;⟨U+2066⟩&lt;/b&gt;"


def test_eval_is_allowed_only_on_chart_pages() -> None:
    assert "'unsafe-eval'" not in csp(charts=False)
    assert "script-src 'self' 'unsafe-eval';" in csp(charts=True)
    assert "'unsafe-inline'" not in csp(charts=True)


def test_package_data_ships_every_template_and_asset() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["gateway"]
    console = ROOT / "gateway" / "console"
    files = [p for d in ("templates", "static") for p in (console / d).rglob("*") if p.is_file()]
    assert len(files) > 20
    for path in files:
        relative = str(path.relative_to(ROOT / "gateway"))
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), relative
