"""Vega-Lite specifications of the console's charts (rendered by the vendored vega-embed).

Specs are built here from the same rows the tables beside them show; the page embeds them as
JSON in a `data-spec` attribute (escaped) and `static/console.js` hands them to vega-embed.
Each chart has a textual `description` (its ARIA label) and the table next to it carries the
same numbers for screen readers.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"
STATES = ["spent", "reserved", "remaining"]


def budget_chart(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """ρ spent, reserved and remaining per dataset and period (the budget's use over time)."""
    values = [
        {
            "budget": f"{r['dataset']} · {r['department']}",
            "period": r["period"],
            "state": state,
            "rho": float(Decimal(r["rho"][state])),
        }
        for r in rows
        for state in STATES
    ]
    return {
        "$schema": SCHEMA,
        "description": "Privacy budget (rho) spent, reserved and remaining per period",
        "data": {"values": values},
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "x": {"field": "period", "type": "ordinal", "title": "period"},
            "y": {"field": "rho", "type": "quantitative", "stack": True, "title": "ρ (zCDP)"},
            "color": {
                "field": "state",
                "type": "nominal",
                "sort": STATES,
                "scale": {"domain": STATES, "range": ["#b03a2e", "#d68910", "#1e8449"]},
            },
            "column": {"field": "budget", "type": "nominal", "title": None},
        },
        "width": 160,
        "height": 180,
    }


def calls_chart(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """调用次数: calls per day, by department, allowed and denied."""
    values = [
        {"day": r["day"], "department": r["department"], "decision": d, "calls": r[d]}
        for r in rows
        for d in ("allowed", "denied")
        if r[d]
    ]
    return {
        "$schema": SCHEMA,
        "description": "Calls per day by department (allowed and denied)",
        "data": {"values": values},
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "x": {"field": "day", "type": "ordinal", "title": "day"},
            "y": {"aggregate": "sum", "field": "calls", "type": "quantitative", "title": "calls"},
            "color": {"field": "department", "type": "nominal"},
            "column": {"field": "decision", "type": "nominal", "title": None},
        },
        "width": 220,
        "height": 200,
    }
