"""The worker protocol: frames, typed values and errors survive the trip, nothing else does."""

from __future__ import annotations

import os
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox import (
    ExecutionCategory,
    ExecutionError,
    Limits,
    QueryTimeout,
    ResourceLimitExceeded,
    ResultTable,
    SandboxBug,
    TemplateRejected,
)
from sandbox.engines import protocol

values = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=20),
    st.dates(),
    st.decimals(allow_nan=False, allow_infinity=False, places=3),
)


@given(st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True), values))
def test_parameters_keep_their_types(params: dict[str, object]) -> None:
    decoded = protocol.decode_params(
        protocol.decode(protocol.frame({"p": protocol.encode_params(params)})[4:])["p"]
    )
    assert decoded == params
    assert [type(v) for v in decoded.values()] == [type(v) for v in params.values()]


def test_parameters_of_other_types_are_refused() -> None:
    with pytest.raises(SandboxBug):
        protocol.encode_params({"x": 1.5})


def test_frames_round_trip_through_a_pipe() -> None:
    read, write = os.pipe()
    message = {"op": "run", "rows": [[1, "a", None, 2.5]], "text": "市场"}
    protocol.write_all(write, protocol.frame(message))
    os.close(write)
    assert protocol.read_frame(read) == message
    with pytest.raises(protocol.ProtocolError):
        protocol.read_frame(read)  # the peer hung up
    os.close(read)


def test_tables_and_limits_round_trip() -> None:
    table = ResultTable(("d", "n"), ("VARCHAR", "BIGINT"), (("a", 2**65), ("b", None)))
    assert protocol.decode_table(protocol.decode(protocol.frame(
        protocol.encode_table(table))[4:])) == table  # fmt: skip
    limits = Limits(timeout_s=3.5, memory_limit="1GB", threads=1, max_rows=5, max_bytes=99)
    assert protocol.decode_limits(protocol.encode_limits(limits)) == limits


@pytest.mark.parametrize(
    "error",
    [
        QueryTimeout(2.0),
        ResourceLimitExceeded(ExecutionCategory.ROW_LIMIT, "5 rows"),
        ExecutionError(ExecutionCategory.DATA),
        ExecutionError(ExecutionCategory.REFUSED),
        TemplateRejected("too many distinct values"),
    ],
)
def test_errors_keep_their_type_and_category(error: Exception) -> None:
    decoded = protocol.decode_error(protocol.encode_error(error))  # type: ignore[arg-type]
    assert type(decoded) is type(error)
    assert str(decoded) == str(error)


def test_an_unknown_or_malformed_error_is_internal() -> None:
    for data in ({}, {"type": "execution", "category": "no-such"}, {"type": "x"}):
        decoded = protocol.decode_error(data)
        assert isinstance(decoded, ExecutionError)
        assert decoded.category is ExecutionCategory.INTERNAL


def test_a_frame_that_is_not_a_json_object_is_a_protocol_error() -> None:
    for body in (b"[1]", b"not json", b"\xff"):
        with pytest.raises(protocol.ProtocolError):
            protocol.decode(body)


def test_dates_and_decimals_are_encoded_exactly() -> None:
    encoded = protocol.encode_params({"d": date(2024, 2, 29), "m": Decimal("12.50")})
    assert encoded == {"d": ["date", "2024-02-29"], "m": ["decimal", "12.50"]}


@given(
    st.lists(
        st.tuples(st.text(max_size=5), st.one_of(st.none(), st.binary(max_size=40))),
        max_size=6,
    )
)
def test_bytes_values_travel_as_binary_after_the_json(rows: list[tuple[str, bytes | None]]) -> None:
    table = ResultTable(("g", "hashes"), ("VARCHAR", "BLOB"), tuple(rows))
    blobs: list[bytes] = []
    message = {"ok": True, "auxiliary": [protocol.encode_table(table, blobs)]}
    sent = protocol.frame(message, blobs)
    assert int.from_bytes(sent[:4], "big") == len(sent) - 4
    received = protocol.decode(sent[4:])
    assert received.get(protocol.BLOBS, []) == blobs
    assert protocol.decode_table(received["auxiliary"][0], blobs) == table
    assert len(blobs) == sum(isinstance(v, bytes) for _, v in rows)
    assert b"".join(blobs) in sent  # raw, not as text


def test_binary_values_that_do_not_add_up_are_a_protocol_error() -> None:
    table = ResultTable(("h",), ("BLOB",), ((b"\x00\x01",),))
    blobs: list[bytes] = []
    body = protocol.frame({"t": protocol.encode_table(table, blobs)}, blobs)[4:]
    assert protocol.decode(body)[protocol.BLOBS] == [b"\x00\x01"]
    end = body.index(b"\0")
    for bad in (
        body + b"x",  # more bytes than listed
        body[:-1],  # fewer
        body[:end],  # listed, not carried
        body[:end].replace(b"[2]", b"[-1]") + body[end:],
        body[:end].replace(b"[2]", b'["2"]') + body[end:],
        b'{"t":1}\0xx',  # carried, not listed
    ):
        with pytest.raises(protocol.ProtocolError):
            protocol.decode(bad)
    with pytest.raises(SandboxBug):
        protocol.frame({protocol.BLOBS: [1]})  # the protocol's own key


def test_a_misplaced_binary_value_is_a_protocol_error() -> None:
    encoded = {"columns": ["h"], "types": ["BLOB"], "rows": [[None], ["x"]]}
    for binary in ([[0, 0, 1]], [[2, 0, 0]], [[1, 0, 0]], [[0, -1, 0]], [[0, 0]], [["0", 0, 0]]):
        with pytest.raises(protocol.ProtocolError):
            protocol.decode_table({**encoded, "binary": binary}, [b"ab"])
    placed = protocol.decode_table({**encoded, "binary": [[0, 0, 0]]}, [b"ab"])
    assert placed.rows == ((b"ab",), ("x",))
