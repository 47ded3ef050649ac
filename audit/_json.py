"""Canonical JSON for events and fingerprints (private to the audit package).

Canonical means: keys sorted by code point, separators `,` and `:` with no spaces, UTF-8 with
non-ASCII characters unescaped, no floats / NaN / Infinity, integers within I-JSON's safe range,
string keys only, nesting at most `MAX_DEPTH` deep, no lone surrogates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, NoReturn

from audit.errors import EventError

JSONValue = str | int | bool | None | list["JSONValue"] | dict[str, "JSONValue"]

MAX_SAFE_INTEGER: Final = 2**53 - 1
MAX_DEPTH: Final = 32


def check_text(name: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise EventError(f"{name} is not valid Unicode text") from None


def normalize(value: object, path: str, depth: int = 0) -> JSONValue:
    """A deep copy of `value` as plain JSON (tuples become lists); EventError if not JSON."""
    if depth > MAX_DEPTH:
        raise EventError(f"{path} is nested more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise EventError(f"{path} is an integer beyond ±(2**53 - 1); send it as a string")
        return int(value)
    if isinstance(value, str):
        check_text(path, value)
        return str.__str__(value)  # a plain str, also for str subclasses and StrEnum members
    if isinstance(value, float):
        raise EventError(f"{path} is a float; send decimals as strings")
    if isinstance(value, (list, tuple)):
        return [normalize(item, f"{path}[]", depth + 1) for item in value]
    if isinstance(value, Mapping):
        result: dict[str, JSONValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise EventError(f"{path} has a key that is not a string")
            check_text(f"a key in {path}", key)
            result[str.__str__(key)] = normalize(item, f"{path}.{key}", depth + 1)
        return result
    raise EventError(f"{path} is a {type(value).__name__}, not a JSON value")


ENCODER: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def dumps(value: JSONValue) -> bytes:
    """Canonical bytes of an already normalised value."""
    return ENCODER.encode(value).encode("utf-8")


def _reject_float(_: str) -> NoReturn:
    raise EventError("floats are not allowed in canonical JSON")


def _reject_constant(_: str) -> NoReturn:
    raise EventError("NaN and Infinity are not allowed in canonical JSON")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise EventError("duplicate key in JSON object")
    return result


def loads(data: bytes) -> Any:
    """Parse canonical-JSON candidate bytes strictly (callers still re-encode and compare)."""
    if not isinstance(data, bytes):
        raise EventError("encoded events are bytes")
    try:
        text = data.decode("utf-8")
        return json.loads(
            text,
            parse_float=_reject_float,
            parse_constant=_reject_constant,
            object_pairs_hook=_object,
        )
    except (ValueError, RecursionError):
        raise EventError("not valid UTF-8 JSON") from None
