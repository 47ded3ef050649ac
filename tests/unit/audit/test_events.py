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
@pytest.mark.slow
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
@pytest.mark.slow
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
@pytest.mark.slow
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


BASE = encode(make_event())


def _with(old: bytes, new: bytes, base: bytes = BASE) -> bytes:
    assert old in base
    return base.replace(old, new, 1)


def _details(raw: bytes) -> bytes:
    """BASE with `raw` as the whole `details` object."""
    return _with(b'"details":{"n":0,"parameters":"hmac-sha256:00"}', b'"details":' + raw)


HOSTILE = {
    # numbers: floats, exponents, NaN/Infinity, -0, range, huge, bools where ints belong
    "float": _details(b'{"n":1.0}'),
    "float zero": _details(b'{"n":0.0}'),
    "negative float zero": _details(b'{"n":-0.0}'),
    "exponent": _details(b'{"n":1e2}'),
    "upper exponent": _details(b'{"n":1E2}'),
    "nan": _details(b'{"n":NaN}'),
    "infinity": _details(b'{"n":Infinity}'),
    "minus infinity": _details(b'{"n":-Infinity}'),
    "minus zero": _details(b'{"n":-0}'),
    "minus zero in a list": _details(b'{"n":[1,-0]}'),
    "max safe": _details(b'{"n":9007199254740991}'),
    "min safe": _details(b'{"n":-9007199254740991}'),
    "beyond safe": _details(b'{"n":9007199254740992}'),
    "below safe": _details(b'{"n":-9007199254740992}'),
    "huge": _details(b'{"n":1' + b"0" * 5000 + b"}"),
    "leading zero": _details(b'{"n":01}'),
    "plus": _details(b'{"n":+1}'),
    "v float": _with(b'"v":1', b'"v":1.0'),
    "v true": _with(b'"v":1', b'"v":true'),
    "v two": _with(b'"v":1', b'"v":2'),
    "v string": _with(b'"v":1', b'"v":"1"'),
    "allowed as int": _with(b'"allowed":true', b'"allowed":1'),
    "allowed as null": _with(b'"allowed":true', b'"allowed":null'),
    # keys: duplicates, order
    "duplicate top key": _with(b'"v":1}', b'"v":1,"v":1}'),
    "duplicate actor key": _with(b'"subject":"analyst-1"', b'"subject":"a","subject":"analyst-1"'),
    "duplicate detail key": _details(b'{"a":1,"a":1}'),
    "duplicate nested key": _details(b'{"a":{"b":1,"b":2}}'),
    "unsorted details": _details(b'{"b":1,"a":1}'),
    "unsorted nested": _details(b'{"a":[{"y":1,"x":2}]}'),
    "sorted nested": _details(b'{"a":[{"x":1,"y":2}],"b":{"":0,"\xc3\xa9":1}}'),
    "code point order": _details(b'{"Z":1,"a":1,"\xc3\xa9":1}'),
    "not code point order": _details(b'{"a":1,"Z":1}'),
    "empty key": _details(b'{"":1}'),
    "unsorted top": _with(b'"action":"submit","actor"', b'"actor"', BASE).replace(
        b'"v":1}', b'"v":1,"action":"submit"}'
    ),
    "missing field": _with(b'"reason":null,', b""),
    "extra field": _with(b'"v":1}', b'"v":1,"w":1}'),
    # whitespace
    "space after colon": _with(b'"allowed":true', b'"allowed": true'),
    "space after comma": _with(b',"allowed"', b', "allowed"'),
    "leading space": b" " + BASE,
    "trailing newline": BASE + b"\n",
    "tab": _details(b'{"n":\t0}'),
    "carriage return": _details(b'{"n":0\r}'),
    "space in a string": _details(b'{"n":" a b "}'),
    "no-break space": _details(b'{"n":\xc2\xa00}'),
    "form feed": _details(b'{"n":\x0c0}'),
    "vertical tab": _details(b'{"n":0\x0b}'),
    # what check_encoded counts (`:`, space, `-0`) inside strings and keys, and across them
    "separators in keys": _details(b'{"a b":1,"a,b":2,"a:b":" : "}'),
    "minus zero in a key": _details(b'{"-0":"-0"}'),
    "minus zero key and value": _details(b'{"-0":-0}'),
    "minus and zero in adjacent strings": _details(b'{"a":["x-","0y"],"b-":"0"}'),
    "duplicate hiding a colon": _details(b'{"a":"b:c","a":"bc"}'),
    "duplicate of an empty object": _details(b'{"a":{},"a":{}}'),
    # escapes and text
    "escaped slash": _details(b'{"n":"a\\/b"}'),
    "slash": _details(b'{"n":"a/b"}'),
    "escaped letter": _details(b'{"n":"\\u0061"}'),
    "escaped e acute": _details(b'{"n":"\\u00e9"}'),
    "raw e acute": _details('{"n":"é"}'.encode()),
    "escaped pair": _details(b'{"n":"\\ud83d\\ude00"}'),
    "raw emoji": _details('{"n":"😀"}'.encode()),
    "lone surrogate": _details(b'{"n":"\\ud800"}'),
    "lone surrogate key": _details(b'{"\\udfff":1}'),
    "raw encoded surrogate": _details(b'{"n":"\xed\xa0\x80"}'),
    "canonical control": _details(b'{"n":"\\u001f"}'),
    "upper hex control": _details(b'{"n":"\\u001F"}'),
    "short newline": _details(b'{"n":"\\n"}'),
    "long newline": _details(b'{"n":"\\u000a"}'),
    "raw newline": _details(b'{"n":"a\nb"}'),
    "raw tab": _details(b'{"n":"a\tb"}'),
    "escaped quote": _details(b'{"n":"\\""}'),
    "escaped backslash": _details(b'{"n":"\\\\"}'),
    "escaped quote in a key": _details(b'{"\\"":1}'),
    "escape and whitespace": _details(b'{"n":"\\n", "m":1}'),
    "escape and duplicate": _details(b'{"m":"\\n","m":"\\n"}'),
    "delete char": _details(b'{"n":"\x7f"}'),
    "line separator": _details('{"n":"\u2028"}'.encode()),
    "bom": b"\xef\xbb\xbf" + BASE,
    "utf-16": BASE.decode().encode("utf-16"),
    "latin-1": _details('{"n":"é"}'.encode("latin-1")),
    "escaped subject": _with(b'"analyst-1"', b'"\\u0061nalyst-1"'),
    "escaped rule": _with(b'"p, analyst', b'"\\u0070, analyst'),
    # required texts
    "empty subject": _with(b'"subject":"analyst-1"', b'"subject":""'),
    "empty role": _with(b'["analyst"]', b'[""]'),
    "role not text": _with(b'["analyst"]', b"[1]"),
    "no roles": _with(b'["analyst"]', b"[]"),
    "roles null": _with(b'["analyst"]', b"null"),
    "empty rule": _with(b'"rule":"p, analyst, tax, template, submit"', b'"rule":""'),
    "rule null": _with(b'"rule":"p, analyst, tax, template, submit"', b'"rule":null'),
    "reason text": _with(b'"reason":null', b'"reason":"why"'),
    "reason empty": _with(b'"reason":null', b'"reason":""'),
    "empty action": _with(b'"action":"submit"', b'"action":""'),
    "actor list": _with(b'"actor":{', b'"actor":[{').replace(b'"analyst-1"}', b'"analyst-1"}]'),
    "details list": _with(b'"details":{', b'"details":[{').replace(b'00"}', b'00"}]'),
    "details null": _details(b"null"),
    "details empty": _details(b"{}"),
    # type
    "type upper": _with(b'"job.accepted"', b'"Job.accepted"'),
    "type one part": _with(b'"job.accepted"', b'"job"'),
    "type 64": _with(b'"job.accepted"', b'"' + b"a" * 30 + b"." + b"b" * 33 + b'"'),
    "type 65": _with(b'"job.accepted"', b'"' + b"a" * 30 + b"." + b"b" * 34 + b'"'),
    # time
    "hour 24": _with(b"T06:36:00", b"T24:00:00"),
    "minute 60": _with(b"T06:36:00", b"T06:60:00"),
    "leap second": _with(b"T06:36:00", b"T23:59:60"),
    "february 30": _with(b"2026-11-22", b"2026-02-30"),
    "february 29 leap": _with(b"2026-11-22", b"2024-02-29"),
    "february 29 common": _with(b"2026-11-22", b"2026-02-29"),
    "year 0": _with(b"2026-11-22", b"0000-11-22"),
    "year 1": _with(b"2026-11-22", b"0001-01-01"),
    "month 13": _with(b"2026-11-22", b"2026-13-01"),
    "unicode digits": _with(b"2026-11-22", "٢٠٢٦-11-22".encode()),
    "lower z": _with(b".000000Z", b".000000z"),
    "no micro": _with(b".000000Z", b"Z"),
    "millis": _with(b".000000Z", b".000Z"),
    "offset": _with(b".000000Z", b".000000+00:00"),
    "time number": _with(b'"2026-11-22T06:36:00.000000Z"', b"0"),
    # depth
    **{f"lists {d}": _details(b'{"d":' + b"[" * d + b"1" + b"]" * d + b"}") for d in (30, 31, 32)},
    **{f"empty list at {d}": _details(b'{"d":' + b"[" * d + b"]" * d + b"}") for d in (31, 32, 33)},
    **{
        f"dicts {d}": _details(b'{"d":' + b'{"k":' * d + b"1" + b"}" * d + b"}")
        for d in (30, 31, 32)
    },
    "deep garbage": _details(b"[" * 100_000),
    # framing
    "trailing garbage": BASE + b"x",
    "two documents": BASE + BASE,
    "array": b"[" + BASE + b"]",
    "empty": b"",
}


def test_the_hostile_cases_are_distinct_and_mostly_refused() -> None:
    assert len(set(HOSTILE.values())) == len(HOSTILE)
    accepted = {name for name, data in HOSTILE.items() if _accepts(decode, data)}
    assert accepted == {
        "max safe",
        "min safe",
        "sorted nested",
        "code point order",
        "empty key",
        "space in a string",
        "separators in keys",
        "minus zero in a key",
        "minus and zero in adjacent strings",
        "slash",
        "raw e acute",
        "raw emoji",
        "canonical control",
        "short newline",
        "escaped quote",
        "escaped backslash",
        "escaped quote in a key",
        "delete char",
        "line separator",
        "rule null",
        "reason text",
        "no roles",
        "details empty",
        "type 64",
        "february 29 leap",
        "year 1",
        "lists 30",
        "lists 31",
        "empty list at 31",
        "empty list at 32",
        "dicts 30",
        "dicts 31",
    }


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_fast_check_agrees_with_decode_on_hostile_input(name: str) -> None:
    data = HOSTILE[name]
    assert _accepts(check_encoded, data) == _accepts(decode, data), name
    if _accepts(decode, data):
        assert check_encoded(data) == decode(data).type


_pieces = st.sampled_from(
    [
        b" ",
        b"\n",
        b"\\",
        b'"',
        b",",
        b":",
        b"-0",
        b"1.0",
        b"1e2",
        b"NaN",
        b"{}",
        b"[]",
        b'"a":1',
        b'"n":',
        b"\\u0041",
        b"\\ud800",
        b"\\n",
        b"\\u000a",
        b"\xc3\xa9",
        b"\xff",
        b"}",
    ]
)


@settings(max_examples=400, deadline=None)
@given(event=events, position=st.integers(min_value=0), piece=_pieces, cut=st.integers(0, 3))
@pytest.mark.slow
def test_fast_check_agrees_with_decode_on_spliced_tokens(
    event: Event, position: int, piece: bytes, cut: int
) -> None:
    data = encode(event)
    at = position % (len(data) + 1)
    changed = data[:at] + piece + data[at + cut :]
    assert _accepts(check_encoded, changed) == _accepts(decode, changed)
