"""Issue 15, item 5: escape sequences and bidi controls in text others wrote — a purpose, a
template title, a dataset title — reach a data owner's or analyst's terminal through the CLI.

Each listing is read as its reader would (`insitu … list` in table, csv and json) from a
served gateway; no output may carry a raw control, bidi or format character. Tables and CSV
show them visibly (`\\x1b`, `\\u202e`); JSON keeps the exact value as JSON escapes. Names that
must be identifiers (dataset and template ids) are refused at input.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from typer.testing import CliRunner

from gateway import home
from gateway.api import create_app
from gateway.auth.issuer import LocalIssuer
from gateway.auth.keys import IssuerKeys
from gateway.cli.app import app
from gateway.cli.render import unsafe
from gateway.demo import documents
from gateway.demo.data import write_demo_data
from gateway.demo.server import BackgroundServer
from gateway.settings import Settings

pytestmark = pytest.mark.slow

# OSC 0 (set the window title) ended by BEL, clear screen, CSI in its C1 form, then a
# right-to-left override that shows "exe.txt" as "txt.exe", a zero-width space and a newline.
EVIL = "ok\x1b]0;pwned\x07\x1b[2J\x9b31m\u202eexe.txt\u200b\u2066x\u2069\u061c\u200e\nend"
YAML_EVIL = (
    '"ok\\e]0;pwned\\a\\e[2J\\x9b31m\\u202eexe.txt\\u200b\\u2066x\\u2069\\u061c\\u200e\\nend"'
)
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\u200b", "\u2066", "\u2069", "\u061c", "\u200e")


@dataclass
class Served:
    url: str
    issuer: LocalIssuer

    def token(self, subject: str, department: str, role: str) -> str:
        return self.issuer.issue(subject=subject, department=department, roles=[role])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("escapes")
    settings = Settings(home=root / "home", database_url=None, workers=1)
    home.init_home(settings)
    write_demo_data(settings.data_dir, enterprises_n=2_000, residents_n=500)
    keys = IssuerKeys.load(settings.keys_dir / home.ISSUER_KEYS)
    issuer = LocalIssuer(keys, issuer=settings.local_issuer, audience=settings.oidc_audience)
    with BackgroundServer(create_app(settings)) as url:
        s = Served(url, issuer)
        yaml = {"Content-Type": "application/yaml"}
        market = {"Authorization": f"Bearer {s.token('o@market', 'market', 'data_owner')}"}
        tax = {"Authorization": f"Bearer {s.token('o@tax', 'tax', 'data_owner')}"}
        analyst = {"Authorization": f"Bearer {s.token('a@stats', 'stats', 'analyst')}"}
        registry = documents.ENTERPRISE_REGISTRY.replace(
            "title: Enterprise registry", f"title: {YAML_EVIL}"
        )
        template = documents.NO_FILING_TEMPLATE.replace(
            "title: Registered enterprises with no tax filing in a year, by district",
            f"title: {YAML_EVIL}",
        )
        with httpx.Client(base_url=url, timeout=60) as http:
            for headers, doc in ((market, registry), (tax, documents.TAX_FILINGS)):
                r = http.post("/v1/datasets", content=doc, headers={**headers, **yaml})
                assert r.status_code == 201, r.text
            r = http.post("/v1/templates", content=template, headers={**analyst, **yaml})
            assert r.status_code == 201, r.text
            r = http.post(
                "/v1/purposes",
                json={"dataset": "market.enterprise_registry", "purpose": EVIL},
                headers=analyst,
            )
            assert r.status_code == 201, r.text
            assert http.get("/v1/purposes", headers=market).json()["items"][0]["purpose"] == EVIL
        yield s


def cli(served: Served, token: str, *args: str) -> str:
    env = {"INSITU_URL": served.url, "INSITU_TOKEN": token}
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


LISTINGS = [
    pytest.param(("o@market", "market", "data_owner"), ("purpose", "list"), id="purpose-list"),
    pytest.param(("a@stats", "stats", "analyst"), ("template", "list"), id="template-list"),
    pytest.param(("a@stats", "stats", "analyst"), ("dataset", "list"), id="dataset-list"),
]


@pytest.mark.parametrize(("who", "command"), LISTINGS)
@pytest.mark.parametrize("fmt", ["table", "csv"])
def test_listings_show_control_and_bidi_characters_visibly(
    served: Served, who: tuple[str, str, str], command: tuple[str, ...], fmt: str
) -> None:
    out = cli(served, served.token(*who), *command, "--output", fmt)
    assert [ch for ch in out if ch in RAW] == []
    assert not [ch for ch in out if ch != "\n" and unsafe(ch)]
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m\\u202eexe.txt" in out


@pytest.mark.parametrize(("who", "command"), LISTINGS)
def test_json_keeps_the_exact_text_as_escapes(
    served: Served, who: tuple[str, str, str], command: tuple[str, ...]
) -> None:
    out = cli(served, served.token(*who), "--output", "json", *command)
    assert not [ch for ch in out if ch != "\n" and unsafe(ch)]
    texts = [v for item in json.loads(out) for v in item.values() if isinstance(v, str)]
    assert EVIL in texts


def test_a_shown_object_is_escaped_too(served: Served) -> None:
    token = served.token("a@stats", "stats", "analyst")
    for fmt in ("table", "json"):
        out = cli(served, token, "template", "show", "enterprises-without-tax-filing", "1",
                  "--output", fmt)  # fmt: skip
        assert not [ch for ch in out if ch != "\n" and unsafe(ch)], fmt


@pytest.mark.parametrize(
    ("path", "document"),
    [
        ("/v1/datasets", documents.ENTERPRISE_REGISTRY.replace(
            "id: market.enterprise_registry", 'id: "market.x\\e[2J"')),
        ("/v1/templates", documents.NO_FILING_TEMPLATE.replace(
            "id: enterprises-without-tax-filing", 'id: "no-filing\\u202e"')),
    ],
)  # fmt: skip
def test_names_that_must_be_identifiers_are_refused_at_input(
    served: Served, path: str, document: str
) -> None:
    role = "data_owner" if path == "/v1/datasets" else "analyst"
    headers = {
        "Authorization": f"Bearer {served.token('o@market', 'market', role)}",
        "Content-Type": "application/yaml",
    }
    r = httpx.post(served.url + path, content=document, headers=headers, timeout=60)
    assert r.status_code == 422
    assert "\x1b" not in r.text and "\u202e" not in r.text
