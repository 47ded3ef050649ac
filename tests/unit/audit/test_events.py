"""Canonical event encoding: round trips, determinism, strictness, fingerprints."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import Actor, AuditError, Event, EventError, decode, encode, fingerprint
from audit.events import check_encoded
from tests.unit.audit._support import T0, make_event

SAFE = 2**53 - 1


def test_encoding_is_the_documented_canonical_form() -> None:
    event = make_event(details={"b": [1, "二"], "a": None})
    assert (
        encode(event)
        == (
            '{"action":"submit","actor":{"department":"tax","roles":["analyst"],'
            '"subject":"analyst-1"},"allowed":true,"details":{"a":null,"b":[1,"二"]},'
            '"reason":null,"rule":"p, analyst, tax, template, submit","target":"job:0",'
            '"time":"2026-11-22T06:36:00.000000Z","type":"job.accepted","v":1}'
        ).encode()
    )


def test_time_is_normalised_to_utc_with_microseconds() -> None:
    plus8 = timezone(timedelta(hours=8))
    event = make_event(time=datetime(2026, 1, 1, 8, 0, 0, 5, tzinfo=plus8))
    assert event.time.tzinfo is UTC
    assert b'"time":"2026-01-01T00:00:00.000005Z"' in encode(event)


@pytest.mark.parametrize(
    "overrides",
    [
        {"type": "job"},
        {"type": "Job.Accepted"},
        {"type": "job.accepted."},
        {"type": "a." + "b" * 70},
        {"time": datetime(2026, 1, 1)},  # naive
        {"action": ""},
        {"target": 5},
        {"allowed": 1},
        {"rule": ""},
        {"details": {"x": 1.5}},
        {"details": {"x": float("nan")}},
        {"details": {1: "x"}},
        {"details": {"x": 2**53}},
        {"details": {"x": {1, 2}}},
        {"details": {"x": "\ud800"}},
        {"details": [("x", 1)]},
        {"actor": ("u", "d", ())},
    ],
)
def test_invalid_events_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(EventError):
        make_event(**overrides)


def test_actor_is_validated() -> None:
    with pytest.raises(EventError):
        Actor("", "tax")
    with pytest.raises(EventError):
        Actor("u", "tax", "analyst")  # type: ignore[arg-type]
    assert Actor("u", "tax", ["a", "b"]).roles == ("a", "b")  # type: ignore[arg-type]


def test_details_are_copied_and_str_enums_become_strings() -> None:
    class Kind(StrEnum):
        DP = "dp"

    details: dict[str, Any] = {"kind": Kind.DP, "xs": (1, 2)}
    event = make_event(details=details)
    details["kind"] = "changed"
    assert event.details == {"kind": "dp", "xs": [1, 2]}
    assert type(event.details["kind"]) is str


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"null",
        b"[]",
        b"\xff",
        b'{"v":2}',
        b"\xef\xbb\xbf" + encode(make_event()),  # BOM
        encode(make_event()) + b"\n",
        encode(make_event()).replace(b'"allowed":true', b'"allowed": true'),
        encode(make_event()).replace(b'"v":1', b'"v":1.0'),
        encode(make_event()).replace(b'"v":1', b'"v":true'),
        encode(make_event()).replace(b'"n":0', b'"n":NaN'),
        encode(make_event()).replace(b'"n":0', b'"n":1e2'),
        encode(make_event()).replace(b'"n":0', b'"n":0,"n":1'),
        encode(make_event()).replace(b'"v":1', b'"v":1,"extra":1'),
        encode(make_event()).replace(b"00.000000Z", b"00Z"),
        encode(make_event()).replace(b"00.000000Z", b"00.000000+00:00"),
        encode(make_event()).replace(b"2026-11-22", b"2026-02-30"),
        encode(make_event()).replace(b'"analyst"]', b'"\\u0061nalyst"]'),
        encode(make_event()).replace(b'"reason":null,', b""),
        encode(make_event()).replace(b'"roles":["analyst"]', b'"roles":"analyst"'),
        encode(make_event()).replace(b'"details":{', b'"details":[{').replace(b'00"}', b'00"}]'),
        b"[" * 100_000,
    ],
)
def test_decode_accepts_only_canonical_v1(data: bytes) -> None:
    with pytest.raises(EventError):
        decode(data)


json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-SAFE, SAFE) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
texts = st.text(min_size=1)
events = st.builds(
    Event,
    type=st.from_regex(r"[a-z_]{1,10}(\.[a-z_]{1,10}){1,3}", fullmatch=True),
    time=st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    actor=st.builds(Actor, texts, texts, st.lists(texts, max_size=3).map(tuple)),
    action=texts,
    target=texts,
    allowed=st.booleans(),
    rule=st.none() | texts,
    reason=st.none() | texts,
    details=st.dictionaries(st.text(), json_values, max_size=5),
)


@settings(max_examples=200, deadline=None)
@given(event=events)
def test_decode_inverts_encode(event: Event) -> None:
    data = encode(event)
    assert decode(data) == event
    assert encode(decode(data)) == data


@settings(max_examples=100, deadline=None)
@given(event=events, seed=st.randoms())
def test_encoding_ignores_dict_insertion_order(event: Event, seed: Any) -> None:
    def shuffled(value: Any) -> Any:
        if isinstance(value, dict):
            items = list(value.items())
            seed.shuffle(items)
            return {k: shuffled(v) for k, v in items}
        if isinstance(value, list):
            return [shuffled(v) for v in value]
        return value

    again = make_event(
        type=event.type,
        time=event.time,
        actor=event.actor,
        action=event.action,
        target=event.target,
        allowed=event.allowed,
        rule=event.rule,
        reason=event.reason,
        details=shuffled(dict(event.details)),
    )
    assert encode(again) == encode(event)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300) | events.map(encode).map(lambda b: b[:-3] + b"x}}"))
def test_decode_of_garbage_raises_only_event_error(data: bytes) -> None:
    try:
        decode(data)
    except AuditError as exc:
        assert isinstance(exc, EventError)


@settings(max_examples=100, deadline=None)
@given(event=events, position=st.integers(min_value=0), bit=st.integers(0, 7))
def test_a_flipped_bit_never_decodes_to_the_same_event(
    event: Event, position: int, bit: int
) -> None:
    data = bytearray(encode(event))
    data[position % len(data)] ^= 1 << bit
    with contextlib.suppress(EventError):
        assert decode(bytes(data)) != event


def test_fingerprint_is_keyed_canonical_and_hides_the_value() -> None:
    key = b"k" * 32
    a = fingerprint(key, {"year": 2024, "industry": "retail"})
    assert a == fingerprint(key, {"industry": "retail", "year": 2024})
    assert a.startswith("hmac-sha256:") and len(a) == len("hmac-sha256:") + 64
    assert "retail" not in a
    assert a != fingerprint(b"j" * 32, {"year": 2024, "industry": "retail"})
    assert fingerprint(key, "x") != fingerprint(key, ["x"])
    with pytest.raises(EventError):
        fingerprint(key, 1.5)
    with pytest.raises(EventError):
        fingerprint(b"short", 1)


def test_canonical_json_matches_the_stdlib_reading() -> None:
    event = make_event(details={"z": {"b": 1, "a": [True, None, "é\n"]}})
    document = json.loads(encode(event))
    assert document["details"] == {"z": {"a": [True, None, "é\n"], "b": 1}}
    assert document["time"] == "2026-11-22T06:36:00.000000Z"
    assert decode(encode(event)).time == T0


def _accepts(check: Any, data: bytes) -> bool:
    try:
        check(data)
    except EventError:
        return False
    return True


def _deep(depth: int) -> bytes:
    details = "[" * depth + "1" + "]" * depth
    return encode(make_event()).replace(
        b'"details":{', b'"details":{"d":' + details.encode() + b","
    )


@pytest.mark.parametrize(
    "data",
    [
        *[_deep(d) for d in (30, 31, 32, 33)],
        encode(make_event()).replace(b'"n":0', b'"n":9007199254740991'),
        encode(make_event()).replace(b'"n":0', b'"n":9007199254740992'),
        encode(make_event()).replace(b'"n":0', b'"n":-0'),
        encode(make_event()).replace(b'"n":0', b'"n":"\\ud800"'),
        encode(make_event()).replace(b'"v":1', b'"v":true'),
        encode(make_event()).replace(b'"rule":"p', b'"rule":"'),
        encode(make_event()).replace(b"2026-11-22", b"0000-11-22"),
    ],
)
def test_fast_check_agrees_with_decode_on_edge_cases(data: bytes) -> None:
    assert _accepts(check_encoded, data) == _accepts(decode, data)


@settings(max_examples=300, deadline=None)
@given(event=events, position=st.integers(min_value=0), value=st.integers(0, 255))
def test_fast_check_accepts_exactly_what_decode_accepts(
    event: Event, position: int, value: int
) -> None:
    data = encode(event)
    assert check_encoded(data) == event.type
    changed = bytearray(data)
    changed[position % len(changed)] = value
    assert _accepts(check_encoded, bytes(changed)) == _accepts(decode, bytes(changed))


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300))
def test_fast_check_of_garbage_raises_only_event_error(data: bytes) -> None:
    assert _accepts(check_encoded, data) == _accepts(decode, data)
