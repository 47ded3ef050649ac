"""HTML out: the Jinja2 environment, the neutralising of free text, the response headers.

Every ``{{ value }}`` is escaped (autoescape) and, before that, neutralised: control and
bidirectional-formatting characters become a visible ``⟨U+202E⟩``, so a title cannot hide or
reorder text around it (Trojan Source). Pages carry no inline script: the CSP allows scripts
from the gateway only (`'unsafe-eval'` on chart pages, which Vega's expression parser needs).
"""

from __future__ import annotations

import unicodedata
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

BIDI = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200b\u2060\ufeff"
)


def neutralise(text: str) -> str:
    """Control, bidi and zero-width characters made visible as ``⟨U+XXXX⟩``; the rest kept."""
    if text.isprintable() and not BIDI.intersection(text):
        return text
    out = []
    for ch in text:
        if ch in BIDI or (unicodedata.category(ch) in {"Cc", "Cf"} and ch not in "\n\t"):
            out.append(f"⟨U+{ord(ch):04X}⟩")
        else:
            out.append(ch)
    return "".join(out)


def _finalize(value: Any) -> Any:
    # Markup too (the output of `|e`, `|join`, `|tojson`, macros): the characters replaced are
    # never HTML syntax, so neutralising marked-up text keeps it well-formed.
    if isinstance(value, Markup):
        return Markup(neutralise(str(value)))  # noqa: S704  (already escaped markup)
    if isinstance(value, str):
        return neutralise(value)
    return value


env = Environment(
    loader=PackageLoader("gateway.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    finalize=_finalize,
    trim_blocks=True,
    lstrip_blocks=True,
)


def csp(*, charts: bool) -> str:
    script = "'self' 'unsafe-eval'" if charts else "'self'"
    return (
        f"default-src 'self'; script-src {script}; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def headers(*, charts: bool = False) -> dict[str, str]:
    return {
        "Content-Security-Policy": csp(charts=charts),
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
    }


def html(
    request: Request, name: str, context: dict[str, Any], *, status: int = 200
) -> HTMLResponse:
    body = env.get_template(name).render(request=request, **context)
    return HTMLResponse(
        body, status_code=status, headers=headers(charts=bool(context.get("charts")))
    )
