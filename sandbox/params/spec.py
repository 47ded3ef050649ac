"""Typed parameter domains and strict validation of job parameter values.

A template declares each parameter with a domain (type plus range, enum, pattern or
"values from a catalogue column"); a job's values are checked against it before anything
runs, converted to the Python types the engines bind, and never spliced into SQL text.

Spec errors are the template author's to fix (TemplateRejected); value errors are the
requester's (ParameterError) and never echo the supplied value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal

from sandbox.errors import ParameterError, SandboxBug, TemplateRejected
from sandbox.params._domains import (
    MAX_STRING_LENGTH,
    RANGE_ELEMENT,
    ParamType,
    check_spec,
    convert_value,
    domain_text,
    parse_bound,
    range_value,
)

PARAMETER_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
_SPEC_KEYS = frozenset(
    {"type", "min", "max", "values", "pattern", "values_from", "max_length", "description",
     "min_width"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ParameterSpec:
    """The domain of one template parameter.

    ``min``/``max``: integers for ``integer``; integers or decimal strings ("0.5") for
    ``number``; ISO dates ("2024-01-31") for ``date``. ``values``: an enum (strings or
    integers). ``pattern``: a full-match regular expression for strings, refused when it can
    backtrack catastrophically. ``values_from``: ``dept.dataset.column`` whose distinct public
    values the gateway resolves into ``values`` (see ``resolved``) before validation.
    """

    name: str
    type: ParamType
    min: int | str | None = None
    max: int | str | None = None
    values: tuple[str | int, ...] | None = None
    pattern: str | None = None
    values_from: str | None = None
    max_length: int = MAX_STRING_LENGTH
    description: str = ""
    min_width: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not PARAMETER_NAME.fullmatch(self.name):
            raise TemplateRejected(
                f"parameter name {str(self.name)[:80]!r} must be lowercase letters, digits "
                "and '_', starting with a letter"
            )
        try:  # accept the plain string from YAML as well as the enum
            object.__setattr__(self, "type", ParamType(self.type))
        except ValueError:
            allowed = ", ".join(t.value for t in ParamType)
            raise TemplateRejected(
                f"parameter '{self.name}': type must be one of {allowed}"
            ) from None
        problem = check_spec(self)
        if problem is not None:
            raise TemplateRejected(f"parameter '{self.name}': {problem}")

    @classmethod
    def from_mapping(cls, name: str, spec: Mapping[str, object]) -> ParameterSpec:
        """Build a spec from template YAML, e.g. ``{type: integer, min: 2015, max: 2030}``."""
        if not isinstance(spec, Mapping):
            raise TemplateRejected(f"parameter '{name}': expected a mapping with a 'type'")
        unknown = sorted(str(k) for k in spec if k not in _SPEC_KEYS)
        if unknown:
            allowed = ", ".join(sorted(_SPEC_KEYS))
            raise TemplateRejected(
                f"parameter '{name}': unknown key(s) {', '.join(unknown)}; allowed: {allowed}"
            )
        type_name = spec.get("type")
        if type_name not in {t.value for t in ParamType}:
            allowed = ", ".join(t.value for t in ParamType)
            raise TemplateRejected(f"parameter '{name}': type must be one of {allowed}")
        values = spec.get("values")
        if values is not None and not isinstance(values, list | tuple):
            raise TemplateRejected(f"parameter '{name}': values must be a list")
        max_length = spec.get("max_length", MAX_STRING_LENGTH)
        description = spec.get("description", "")
        min_width = spec.get("min_width")
        if min_width is not None and type(min_width) is not int:
            raise TemplateRejected(f"parameter '{name}': min_width must be an integer")
        if not isinstance(max_length, int) or not isinstance(description, str):
            raise TemplateRejected(
                f"parameter '{name}': max_length must be an integer, description a string"
            )
        return cls(
            name=name,
            type=ParamType(str(type_name)),
            min=_yaml_bound(name, spec.get("min")),
            max=_yaml_bound(name, spec.get("max")),
            values=None if values is None else tuple(values),
            pattern=_optional_str(name, "pattern", spec.get("pattern")),
            values_from=_optional_str(name, "values_from", spec.get("values_from")),
            max_length=max_length,
            description=description,
            min_width=min_width,
        )

    @property
    def bound_names(self) -> tuple[str, ...]:
        """The names the SQL binds: ``<name>_from`` and ``<name>_to`` for a range."""
        if self.type in RANGE_ELEMENT:
            return (f"{self.name}_from", f"{self.name}_to")
        return (self.name,)

    @property
    def is_resolved(self) -> bool:
        """False while a ``values_from`` domain still waits for its values."""
        return self.values_from is None or self.values is not None

    def resolved(self, values: tuple[str | int, ...]) -> ParameterSpec:
        """This spec with its ``values_from`` column's distinct values filled in."""
        if self.values_from is None:
            raise SandboxBug(f"parameter '{self.name}' has no values_from to resolve")
        return replace(self, values=tuple(values))

    def describe(self) -> str:
        """The rule in words, e.g. 'an integer from 2015 to 2030'."""
        return domain_text(self)


def _yaml_bound(name: str, value: object) -> int | str | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str):
        return value
    if isinstance(value, date):  # YAML reads an unquoted 2024-01-31 as a date
        return value.isoformat()
    if isinstance(value, float) and math.isfinite(value):
        return str(Decimal(repr(value)))
    raise TemplateRejected(f"parameter '{name}': min/max must be a number, a date or a string")


def _optional_str(name: str, key: str, value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TemplateRejected(f"parameter '{name}': {key} must be a string")


def validate_parameters(
    specs: Mapping[str, ParameterSpec], values: Mapping[str, object]
) -> dict[str, object]:
    """Check ``values`` against ``specs`` and return them converted for binding.

    Strict: every declared parameter is required, undeclared ones are refused, JSON types
    must match exactly (``true`` is not an integer, ``"2024"`` is not an integer; an integer
    is a fine number). Returns int, Decimal, str, datetime.date or bool values.
    """
    for key, spec in specs.items():
        if not isinstance(spec, ParameterSpec) or spec.name != key:
            raise SandboxBug(f"parameter spec under key {key!r} is not named {key!r}")
        if not spec.is_resolved:
            raise SandboxBug(
                f"parameter '{key}' takes values_from {spec.values_from} but the gateway did "
                "not resolve them before validation"
            )
    for key in values:
        if key not in specs:
            shown = key if isinstance(key, str) and PARAMETER_NAME.fullmatch(key) else "?"
            raise ParameterError(shown, "is not a parameter of this template")
    result: dict[str, object] = {}
    for key, spec in specs.items():
        if key not in values:
            raise ParameterError(key, f"is required: {domain_text(spec)}")
        if spec.type in RANGE_ELEMENT:
            pair = range_value(spec, values[key])
            if pair is None:
                raise ParameterError(key, f"must be {domain_text(spec)}")
            result.update(zip(spec.bound_names, pair, strict=True))
            continue
        converted = convert_value(spec, values[key])
        if converted is None:
            raise ParameterError(key, f"must be {domain_text(spec)}")
        result[key] = converted
    return result


__all__ = [
    "MAX_STRING_LENGTH",
    "ParamType",
    "ParameterSpec",
    "parse_bound",
    "validate_parameters",
]
