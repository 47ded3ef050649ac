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
