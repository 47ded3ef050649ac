"""The rules behind ParameterSpec: checking a spec, converting a value, saying the rule.

Kept apart from ``params.py`` so each file stays small; nothing here is public API except
``ParamType`` and ``parse_bound``, re-exported by ``sandbox.params.spec``.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import TYPE_CHECKING

from sandbox.params._regex_guard import pattern_problem

if TYPE_CHECKING:
    from sandbox.params.spec import ParameterSpec

MAX_DIGITS = 18  # a number has at most 18 digits before and 18 after the point
MAX_STRING_LENGTH = 256  # longest string parameter value
_LIMIT = Decimal(10) ** MAX_DIGITS
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_VALUES_FROM = re.compile(r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*")
_MAX_VALUES = 10_000
_LISTED = 10  # enums up to this size are listed in messages


class ParamType(StrEnum):
    INTEGER = "integer"
    NUMBER = "number"  # decimal; bound as decimal.Decimal, never float
    STRING = "string"
    DATE = "date"  # ISO 'YYYY-MM-DD' in JSON; bound as datetime.date
    BOOLEAN = "boolean"
    # A range [from, to] bound as `:<name>_from` and `:<name>_to`, at least `min_width` wide
    # (years, or days for dates): a narrow range would single records out.
    INTEGER_RANGE = "integer_range"
    DATE_RANGE = "date_range"


RANGE_ELEMENT = {ParamType.INTEGER_RANGE: ParamType.INTEGER, ParamType.DATE_RANGE: ParamType.DATE}


def parse_bound(kind: ParamType, raw: object) -> int | Decimal | date:
    """A min/max or value of ``kind`` as written in a spec; ValueError says what is wrong."""
    kind = RANGE_ELEMENT.get(kind, kind)
    if kind is ParamType.INTEGER and type(raw) is int:
        return raw
    if kind is ParamType.NUMBER and (type(raw) is int or isinstance(raw, str)):
        number = _decimal(raw)
        if number is not None:
            return number
    if kind is ParamType.DATE and isinstance(raw, str) and _ISO_DATE.fullmatch(raw):
        try:
            return date.fromisoformat(raw)
        except ValueError:
            pass
    wanted = {
        ParamType.INTEGER: "an integer",
        ParamType.NUMBER: f"a number with at most {MAX_DIGITS} digits each side of the point",
        ParamType.DATE: "an ISO date 'YYYY-MM-DD'",
    }.get(kind, "absent")
    raise ValueError(f"min/max must be {wanted}")


def _decimal(raw: object) -> Decimal | None:
    try:
        number = Decimal(repr(raw)) if isinstance(raw, float) else Decimal(str(raw))
    except InvalidOperation:
        return None
    if not number.is_finite() or abs(number) >= _LIMIT:
        return None
    exponent = number.as_tuple().exponent
    if not isinstance(exponent, int) or exponent < -MAX_DIGITS:
        return None
    return number


def check_spec(spec: ParameterSpec) -> str | None:
    """Why ``spec`` is not a usable domain, or None."""
    kind = spec.type
    allowed_keys = {
        ParamType.INTEGER: {"min", "max", "values", "values_from"},
        ParamType.NUMBER: {"min", "max"},
        ParamType.STRING: {"values", "pattern", "values_from", "max_length"},
        ParamType.DATE: {"min", "max"},
        ParamType.BOOLEAN: set(),
        ParamType.INTEGER_RANGE: {"min", "max", "min_width"},
        ParamType.DATE_RANGE: {"min", "max", "min_width"},
    }[kind]
    used = {
        key
        for key, value in (
            ("min", spec.min),
            ("max", spec.max),
            ("values", spec.values),
            ("pattern", spec.pattern),
            ("values_from", spec.values_from),
        )
        if value is not None
    }
    if spec.max_length != MAX_STRING_LENGTH:
        used.add("max_length")
    if spec.min_width is not None:
        used.add("min_width")
    if used - allowed_keys:
        return f"{', '.join(sorted(used - allowed_keys))} cannot be used with type {kind}"
    if spec.values_from is None and spec.values is not None and used & {"min", "max", "pattern"}:
        return "use either values or min/max/pattern, not both"
    if spec.values_from is not None and used & {"min", "max", "pattern"}:
        return "values_from cannot be combined with min/max/pattern"
    if not isinstance(spec.description, str) or len(spec.description) > 500:
        return "description must be a string of at most 500 characters"
    if kind in RANGE_ELEMENT and (type(spec.min_width) is not int or spec.min_width < 1):
        return "a range needs min_width, a positive integer (years, or days for dates)"
    return _check_parts(spec)


def _check_parts(spec: ParameterSpec) -> str | None:
    bounds: list[int | Decimal | date] = []
    for raw in (spec.min, spec.max):
        if raw is not None:
            try:
                bounds.append(parse_bound(spec.type, raw))
            except ValueError as exc:
                return str(exc)
    if spec.min is not None and spec.max is not None and _key(bounds[0]) > _key(bounds[1]):
        return "min must not be greater than max"
    if type(spec.max_length) is not int or not 1 <= spec.max_length <= MAX_STRING_LENGTH:
        return f"max_length must be an integer from 1 to {MAX_STRING_LENGTH}"
    if spec.pattern is not None:
        problem = pattern_problem(spec.pattern)
        if problem is not None:
            return f"pattern {problem}"
    if spec.values_from is not None and not _VALUES_FROM.fullmatch(spec.values_from):
        return "values_from must be '<department>.<dataset>.<column>'"
    if spec.values is not None:
        return _check_values(spec)
    return None


def _check_values(spec: ParameterSpec) -> str | None:
    values = spec.values
    if not isinstance(values, tuple) or not values or len(values) > _MAX_VALUES:
        return f"values must be a non-empty list of at most {_MAX_VALUES} items"
    for value in values:
        if spec.type is ParamType.INTEGER and type(value) is not int:
            return "values of an integer parameter must all be integers"
        if spec.type is ParamType.STRING and not isinstance(value, str):
            return "values of a string parameter must all be strings"
        if isinstance(value, str) and len(value) > spec.max_length:
            return f"values must be at most {spec.max_length} characters long"
    if len(set(values)) != len(values):
        return "values must not repeat"
    return None


def _int64(value: int) -> bool:
    """Within a 64-bit integer, as every engine binds one."""
    return -(2**63) <= value < 2**63


def convert_value(spec: ParameterSpec, value: object) -> object | None:
    """``value`` converted for binding, or None when it is outside the domain."""
    converted: object | None = None
    if spec.type is ParamType.BOOLEAN:
        converted = value if isinstance(value, bool) else None
    elif spec.type is ParamType.INTEGER:
        converted = value if type(value) is int and _int64(value) else None
    elif spec.type is ParamType.NUMBER:
        ok = type(value) in (int, float, Decimal)
        converted = _decimal(value) if ok else None
    elif spec.type is ParamType.DATE:
        converted = _date(value)
    elif isinstance(value, str) and len(value) <= spec.max_length and "\x00" not in value:
        pattern = spec.pattern
        converted = value if pattern is None or re.fullmatch(pattern, value) else None
    if converted is None or not _in_range(spec, converted):
        return None
    if spec.values is not None and converted not in spec.values:
        return None
    return converted


def _date(value: object) -> date | None:
    if isinstance(value, date) and type(value) is date:
        return value
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _key(value: int | Decimal | date) -> Decimal:
    """A common ordering for bounds and values of one parameter type."""
    return Decimal(value.toordinal()) if isinstance(value, date) else Decimal(value)


def _in_range(spec: ParameterSpec, value: object) -> bool:
    if not isinstance(value, int | Decimal | date) or isinstance(value, bool):
        return True  # strings and booleans have no range
    if spec.min is not None and _key(value) < _key(parse_bound(spec.type, spec.min)):
        return False
    return not (spec.max is not None and _key(value) > _key(parse_bound(spec.type, spec.max)))


def range_value(spec: ParameterSpec, value: object) -> tuple[object, object] | None:
    """A range value ``[from, to]`` (or ``{"from": …, "to": …}``) converted, or None."""
    if isinstance(value, dict) and set(value) == {"from", "to"}:
        pair = [value["from"], value["to"]]
    elif isinstance(value, list | tuple) and len(value) == 2:
        pair = list(value)
    else:
        return None
    element = RANGE_ELEMENT[spec.type]
    low, high = (_element(spec, element, v) for v in pair)
    if low is None or high is None or spec.min_width is None:
        return None
    width = (high - low).days if isinstance(low, date) and isinstance(high, date) else None
    if width is None and type(low) is int and type(high) is int:
        width = high - low
    if width is None or width < spec.min_width:
        return None
    return low, high


def _element(spec: ParameterSpec, element: ParamType, value: object) -> int | date | None:
    if element is ParamType.INTEGER:
        converted: int | date | None = value if type(value) is int and _int64(value) else None
    else:
        converted = _date(value)
    if converted is None or not _in_range(spec, converted):
        return None
    return converted


def domain_text(spec: ParameterSpec) -> str:
    """The rule in words: 'an integer from 2015 to 2030', "one of 'a', 'b'", …"""
    if spec.type in RANGE_ELEMENT:
        unit = "years" if spec.type is ParamType.INTEGER_RANGE else "days"
        bounds = f" within {spec.min} to {spec.max}" if spec.min is not None else ""
        return (
            f"a range [from, to]{bounds}, at least {spec.min_width} {unit} wide "
            f"(from :{spec.name}_from to :{spec.name}_to)"
        )
    noun = {
        ParamType.INTEGER: "an integer",
        ParamType.NUMBER: f"a number with at most {MAX_DIGITS} digits each side of the point",
        ParamType.STRING: f"a string of at most {spec.max_length} characters (no NUL)",
        ParamType.DATE: "a date written YYYY-MM-DD",
        ParamType.BOOLEAN: "true or false",
    }[spec.type]
    if spec.values is not None:
        if len(spec.values) <= _LISTED:
            listed = ", ".join(repr(v) for v in spec.values)
            return f"one of {listed}"
        return f"one of the {len(spec.values)} allowed values"
    if spec.min is not None and spec.max is not None:
        return f"{noun} from {spec.min} to {spec.max}"
    if spec.min is not None:
        return f"{noun} of at least {spec.min}"
    if spec.max is not None:
        return f"{noun} of at most {spec.max}"
    if spec.pattern is not None:
        return f"{noun} matching the pattern {spec.pattern}"
    return noun
