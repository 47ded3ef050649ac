"""Parameter forms typed from a template's domains, and the values they send back.

The form only helps: every value is validated again by the same `validate_parameters` the API
uses when the job is submitted (a browser can send anything).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.console.web import Form
from sandbox import ParameterSpec, ParamType, domain_text

RANGES = {ParamType.INTEGER_RANGE: "number", ParamType.DATE_RANGE: "date"}


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    widget: str  # select | number | date | checkbox | text | range
    rule: str  # the domain in words
    input_type: str = "text"
    choices: tuple[str, ...] = ()
    attrs: dict[str, str] = field(default_factory=dict)


def field_for(spec: ParameterSpec) -> Field:
    rule = domain_text(spec)
    bounds = {k: str(v) for k, v in (("min", spec.min), ("max", spec.max)) if v is not None}
    if spec.values is not None:
        return Field(spec.name, "select", rule, choices=tuple(str(v) for v in spec.values))
    if spec.type in RANGES:
        return Field(spec.name, "range", rule, input_type=RANGES[spec.type], attrs=bounds)
    if spec.type is ParamType.INTEGER:
        return Field(spec.name, "number", rule, "number", attrs={**bounds, "step": "1"})
    if spec.type is ParamType.NUMBER:
        return Field(spec.name, "number", rule, "number", attrs={**bounds, "step": "any"})
    if spec.type is ParamType.DATE:
        return Field(spec.name, "date", rule, "date", attrs=bounds)
    if spec.type is ParamType.BOOLEAN:
        return Field(spec.name, "checkbox", rule, "checkbox")
    attrs = {"maxlength": str(spec.max_length)}
    if spec.pattern:
        attrs["pattern"] = spec.pattern
    return Field(spec.name, "text", rule, attrs=attrs)


def _scalar(spec_type: ParamType, raw: str) -> Any:
    if spec_type in {ParamType.INTEGER, ParamType.INTEGER_RANGE}:
        try:
            return int(raw)
        except ValueError:
            return raw  # refused with the domain's message by validate_parameters
    return raw


def values_from(specs: dict[str, ParameterSpec], form: Form) -> dict[str, Any]:
    """The JSON values a form sent, shaped as the API takes them."""
    values: dict[str, Any] = {}
    for name, spec in specs.items():
        if spec.type is ParamType.BOOLEAN:
            values[name] = form.get(f"p.{name}") == "true"
        elif spec.type in RANGES:
            values[name] = [
                _scalar(spec.type, form.get(f"p.{name}.from")),
                _scalar(spec.type, form.get(f"p.{name}.to")),
            ]
        elif spec.values is not None and all(isinstance(v, int) for v in spec.values):
            values[name] = _scalar(ParamType.INTEGER, form.get(f"p.{name}"))
        else:
            values[name] = _scalar(spec.type, form.get(f"p.{name}"))
    return values
