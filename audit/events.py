"""Audit events and their canonical encoding (version 1).

An entry in the log is `encode(event)`: the bytes that are hashed, signed over (via the tree) and
exported. The encoding is JSON with keys sorted, no insignificant whitespace, UTF-8 without
escaping non-ASCII, every field present (absent rule/reason as null) and a top-level `"v": 1`:

    {"action":"submit","actor":{"department":"tax","roles":["analyst"],"subject":"u1"},
     "allowed":true,"details":{},"reason":null,"rule":"p:analyst","target":"job:1",
     "time":"2026-11-22T06:36:00.000001Z","type":"job.accepted","v":1}

Values are JSON without floats (decimals travel as strings) and integers within I-JSON's safe
range (|i| <= 2**53 - 1), so every implementation reads them back exactly. `decode` is the strict
inverse: it accepts exactly the bytes `encode` produces. Sensitive values never go in an event:
`fingerprint` turns them into keyed hashes.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from audit import _json
from audit._json import JSONValue
from audit.errors import EventError

__all__ = [
    "VERSION",
    "Actor",
    "Event",
    "JSONValue",
    "check_encoded",
    "decode",
    "encode",
    "fingerprint",
]

VERSION: Final = 1
TYPE_PATTERN: Final = re.compile(r"[a-z_]+(\.[a-z_]+)+")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_EVENT_KEYS = frozenset(
    {"v", "type", "time", "actor", "action", "target", "allowed", "rule", "reason", "details"}
)
_ACTOR_KEYS = frozenset({"subject", "department", "roles"})


def _text(name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value:
        raise EventError(f"{name} must be a non-empty string")
    _json.check_text(name, value)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it: subject, department (Casbin domain) and the roles held at the time."""

    subject: str
    department: str
    roles: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _text("actor.subject", self.subject)
        _text("actor.department", self.department)
        roles: object = self.roles
        if not isinstance(roles, (tuple, list)):
            raise EventError("actor.roles must be a tuple of strings")
        object.__setattr__(self, "roles", tuple(roles))
        for role in self.roles:
            _text("actor.roles[]", role)


@dataclass(frozen=True, slots=True)
class Event:
    """One decision or state change. `time` is normalised to UTC; `details` is deep-copied."""

    type: str
    time: datetime
    actor: Actor
    action: str
    target: str
    allowed: bool
    rule: str | None = None
    reason: str | None = None
    details: Mapping[str, JSONValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.type, str) or not TYPE_PATTERN.fullmatch(self.type):
            raise EventError("event type must be dotted lowercase, e.g. 'job.accepted'")
        if len(self.type) > 64:
            raise EventError("event type must be at most 64 characters")
        if not isinstance(self.time, datetime) or self.time.utcoffset() is None:
            raise EventError("event time must be a timezone-aware datetime")
        try:
            object.__setattr__(self, "time", self.time.astimezone(UTC))
        except OverflowError:
            raise EventError("event time is out of range in UTC") from None
        if not isinstance(self.actor, Actor):
            raise EventError("event actor must be an Actor")
        _text("action", self.action)
        _text("target", self.target)
        if not isinstance(self.allowed, bool):
            raise EventError("allowed must be a bool")
        _text("rule", self.rule, optional=True)
        _text("reason", self.reason, optional=True)
        if not isinstance(self.details, Mapping):
            raise EventError("details must be a mapping")
        object.__setattr__(self, "details", _json.normalize(dict(self.details), "details"))


def _format_time(t: datetime) -> str:
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T"
        f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond:06d}Z"
    )


def encode(event: Event) -> bytes:
    """The canonical v1 bytes of `event`."""
    if not isinstance(event, Event):
        raise EventError("only an Event can be encoded")
    document: dict[str, JSONValue] = {
        "v": VERSION,
        "type": event.type,
        "time": _format_time(event.time),
        "actor": {
            "subject": event.actor.subject,
            "department": event.actor.department,
            "roles": list(event.actor.roles),
        },
        "action": event.action,
        "target": event.target,
        "allowed": event.allowed,
        "rule": event.rule,
        "reason": event.reason,
        "details": dict(event.details),
    }
    return _json.dumps(document)


def _field(document: Mapping[str, Any], keys: frozenset[str], what: str) -> None:
    if set(document) != keys:
        raise EventError(f"{what} must have exactly the fields {sorted(keys)}")


def decode(data: bytes) -> Event:
    """The event encoded in `data`; raises EventError unless `data` is canonical v1."""
    document = _json.loads(data)
    if not isinstance(document, dict):
        raise EventError("an encoded event is a JSON object")
    if document.get("v") != VERSION or isinstance(document.get("v"), bool):
        raise EventError(f"unsupported event encoding version (expected {VERSION})")
    _field(document, _EVENT_KEYS, "an event")
    actor = document["actor"]
    if not isinstance(actor, dict):
        raise EventError("actor must be an object")
    _field(actor, _ACTOR_KEYS, "actor")
    if not isinstance(actor["roles"], list):
        raise EventError("actor.roles must be a list")
    if not isinstance(document["details"], dict):
        raise EventError("details must be an object")
    time = document["time"]
    if not isinstance(time, str) or not _TIME.fullmatch(time):
        raise EventError("time must be RFC 3339 UTC with microseconds, e.g. ...T06:36:00.000000Z")
    try:
        moment = datetime.strptime(time, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        raise EventError("time is not a valid date and time") from None
    event = Event(
        type=document["type"],
        time=moment,
        actor=Actor(actor["subject"], actor["department"], tuple(actor["roles"])),
        action=document["action"],
        target=document["target"],
        allowed=document["allowed"],
        rule=document["rule"],
        reason=document["reason"],
        details=document["details"],
    )
    if encode(event) != data:
        raise EventError("event bytes are not in canonical form")
    return event


_ASCII_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{6}Z", re.ASCII
)
_MAX_INT = _json.MAX_SAFE_INTEGER
_MIN_INT = -_json.MAX_SAFE_INTEGER
_EVENT_ORDER = sorted(_EVENT_KEYS)
_ACTOR_ORDER = sorted(_ACTOR_KEYS)


def _walk(container: dict[str, Any] | list[Any], depth: int, texts: list[str]) -> int:
    """The number of key/value pairs in the objects of `container` (itself included), adding
    every key and string value to `texts`; -1 unless it is what `_json.normalize` accepts, in
    canonical order: no float (NaN and Infinity parse as floats), integers within ±(2**53 - 1),
    nothing deeper than MAX_DEPTH (details at depth 0), every object's keys ascending."""
    if depth >= _json.MAX_DEPTH:
        return 0 if depth == _json.MAX_DEPTH and not container else -1
    values: Iterable[Any]
    if type(container) is dict:
        keys = list(container)
        if keys != sorted(keys):  # keys are distinct, so this is strictly ascending
            return -1
        texts += keys
        pairs, values = len(keys), container.values()
    else:
        pairs, values = 0, container
    value: Any
    for value in values:
        kind: Any = type(value)
        if kind is str:
            texts.append(value)
        elif kind is bool or value is None:
            continue
        elif kind is int:
            if not _MIN_INT <= value <= _MAX_INT:
                return -1
        elif kind is dict or kind is list:
            inner = _walk(value, depth + 1, texts)
            if inner < 0:
                return -1
            pairs += inner
        else:  # float
            return -1
    return pairs


@functools.lru_cache(maxsize=4096)
def _valid_date(date: str) -> bool:
    """`YYYY-MM-DD` (ASCII digits already checked) is a date `datetime` accepts."""
    try:
        datetime(int(date[0:4]), int(date[5:7]), int(date[8:10]))
    except ValueError:
        return False
    return True


# One value from an index, no whitespace skipped (the C scanner `JSONDecoder.decode` uses).
_SCAN_JSON: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


@functools.lru_cache(maxsize=1024)
def _valid_type(kind: str) -> bool:
    return len(kind) <= 64 and TYPE_PATTERN.fullmatch(kind) is not None


_FIXED_PAIRS = len(_EVENT_ORDER) + len(_ACTOR_ORDER)


def check_encoded(data: bytes) -> str:
    """The event type of `data` if `decode(data)` would accept it, else EventError.

    The verifier's fast path: the same acceptance as `decode` (a property test holds them
    equal) without building the event. Parsed with the stdlib's C scanner and no per-value
    hooks; floats, NaN and out-of-range integers are caught by one walk over `details` (the
    only field that may hold numbers besides `v`), which also checks that keys ascend, counts
    the key/value pairs and collects every string.

    Canonical form: without a backslash in `data` every string is written exactly as `encode`
    writes it (no escapes; raw control characters are not JSON), so the text differs from the
    canonical encoding only by what lies between tokens. It is canonical exactly when it has no
    raw newline, tab or return, and its `:`, space and `-0` are all inside strings but for one
    `:` per pair (a duplicate key adds a `:`; whitespace or `-0` between tokens add the rest).
    Counting these in the text and in the parsed strings (joined by NUL, which no string
    holds) decides it. With a backslash, the canonical re-encoding is compared instead.
    """
    if type(data) is not bytes:
        raise EventError("encoded events are bytes")
    try:
        text = data.decode("utf-8")
        doc, end = _SCAN_JSON(text, 0)
    except (StopIteration, ValueError, RecursionError):
        raise EventError("not valid UTF-8 JSON") from None
    if end != len(text) or type(doc) is not dict or list(doc) != _EVENT_ORDER:
        raise EventError(f"an event is one object with exactly the fields {_EVENT_ORDER}")
    actor, kind, time = doc["actor"], doc["type"], doc["time"]
    texts = [kind, time, doc["action"], doc["target"]]  # strings, all to be non-empty str
    if type(actor) is not dict or list(actor) != _ACTOR_ORDER:
        raise EventError("not a valid v1 event")
    roles = actor["roles"]
    if type(roles) is list:
        texts += roles
    texts.append(actor["subject"])
    texts.append(actor["department"])
    rule, reason, details = doc["rule"], doc["reason"], doc["details"]
    if rule is not None:
        texts.append(rule)
    if reason is not None:
        texts.append(reason)
    checked = len(texts)
    pairs = _walk(details, 0, texts) if type(details) is dict else -1
    if (
        pairs < 0
        or type(doc["v"]) is not int  # neither a bool nor a float
        or doc["v"] != VERSION
        or type(roles) is not list
        or not _texts(texts[:checked])  # all non-empty str, rule and reason when present
        or not _valid_type(kind)
        or type(doc["allowed"]) is not bool
        or not _ASCII_TIME.fullmatch(time)
        or not _valid_date(time[:10])
    ):
        raise EventError("not a valid v1 event")
    if "\\" in text:
        # `text` is valid UTF-8, so equal text means equal bytes; a lone surrogate (from a
        # \ud800 escape) is written raw by the encoder and never equals the escaped input.
        canonical = _json.ENCODER.encode(doc) == text
    else:
        inside = "\0".join(texts)
        canonical = (
            "\n" not in text
            and "\t" not in text
            and "\r" not in text
            and text.count(":") == inside.count(":") + pairs + _FIXED_PAIRS
            and text.count(" ") == inside.count(" ")
            and ("-0" not in text or text.count("-0") == inside.count("-0"))
        )
    if not canonical:
        raise EventError("event bytes are not in canonical form")
    return str(kind)


def _texts(values: list[Any]) -> bool:
    """Every value is a non-empty str."""
    for value in values:  # noqa: SIM110 - a loop is a third faster than all() over a generator
        if type(value) is not str or not value:
            return False
    return True


def fingerprint(key: bytes, value: object) -> str:
    """`hmac-sha256:<hex>` of the canonical JSON of `value` under `key` (never the value)."""
    if not isinstance(key, bytes) or len(key) < 16:
        raise EventError("a fingerprint key must be at least 16 bytes")
    digest = hmac.new(key, _json.dumps(_json.normalize(value, "value")), hashlib.sha256)
    return "hmac-sha256:" + digest.hexdigest()
