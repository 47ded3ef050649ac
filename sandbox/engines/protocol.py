"""The messages between the gateway and a sandbox worker process: typed, JSON, framed.

Frames are a 4-byte big-endian length and a UTF-8 JSON object, so nothing the worker sends
is ever unpickled or evaluated by the parent (a compromised worker can send bad data, not
code). A frame may carry binary values after its JSON: a NUL byte (which JSON text never
holds) and the values' bytes back to back, their sizes listed under ``blobs`` in the JSON.
A table's bytes values travel so (``encode_table``): a census's member hashes are 8 bytes a
unit there, not 16 hex digits the parent would scan as JSON text.

Requests: ``init`` (limits and OS limits), ``run``, ``distinct_values``, ``infer_schema``.
Replies: ``{"ok": true, ...}`` or ``{"ok": false, "error": {...}}`` with only the error's
type and category — never a driver message.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from sandbox.compile.auxiliary import AuxiliaryQuery
from sandbox.compile.query import CompiledQuery
from sandbox.errors import (
    ExecutionCategory,
    ExecutionError,
    QueryTimeout,
    ResourceLimitExceeded,
    SandboxBug,
    SandboxError,
    TemplateRejected,
)
from sandbox.results import ResultTable
from sandbox.sources import Limits, TableSource

MAX_FRAME = 1 << 30  # a frame larger than this is a protocol error
BLOBS = "blobs"  # a frame's binary values: their sizes in the JSON, bytes once decoded
_HEADER = 4


class ProtocolError(Exception):
    """The peer sent something that is not a well-formed frame (or hung up)."""


def frame(message: dict[str, Any], blobs: Sequence[bytes] = ()) -> bytes:
    """``message`` as one frame; ``blobs`` (binary values it refers to by position) after it."""
    if BLOBS in message:
        raise SandboxBug(f"'{BLOBS}' is the protocol's own key")
    if blobs:
        message = {**message, BLOBS: [len(b) for b in blobs]}
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    size = len(body) + (1 + sum(len(b) for b in blobs) if blobs else 0)
    if size > MAX_FRAME:
        raise ProtocolError("message too large")
    if not blobs:
        return size.to_bytes(_HEADER, "big") + body
    return b"".join((size.to_bytes(_HEADER, "big"), body, b"\0", *blobs))


def read_frame(fd: int) -> dict[str, Any]:
    """Read one frame from a blocking file descriptor (the worker's side)."""
    size = int.from_bytes(_read_exact(fd, _HEADER), "big")
    if size > MAX_FRAME:
        raise ProtocolError("frame too large")
    return decode(_read_exact(fd, size))


def decode(body: bytes) -> dict[str, Any]:
    """A frame's message; its binary values, if any, as a list of bytes under ``blobs``."""
    end = body.find(b"\0")
    try:
        message = json.loads(body if end < 0 else body[:end])
    except ValueError:
        raise ProtocolError("frame is not JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError("frame is not an object")
    sizes = message.get(BLOBS)
    if end < 0:
        if sizes is not None:
            raise ProtocolError("a frame lists binary values it does not carry")
        return message
    if (
        not isinstance(sizes, list)
        or not all(type(n) is int and n >= 0 for n in sizes)
        or sum(sizes) != len(body) - end - 1
    ):
        raise ProtocolError("a frame's binary values do not match their sizes")
    view, at, blobs = memoryview(body), end + 1, []
    for n in sizes:
        blobs.append(bytes(view[at : at + n]))
        at += n
    message[BLOBS] = blobs
    return message


def _read_exact(fd: int, size: int) -> bytes:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise ProtocolError("the peer hung up")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


# --- values ---------------------------------------------------------------------------


def encode_params(params: dict[str, object]) -> dict[str, list[object]]:
    out: dict[str, list[object]] = {}
    for name, value in params.items():
        if isinstance(value, bool):
            out[name] = ["bool", value]
        elif isinstance(value, int):
            out[name] = ["int", value]
        elif isinstance(value, str):
            out[name] = ["str", value]
        elif isinstance(value, Decimal):
            out[name] = ["decimal", str(value)]
        elif isinstance(value, date):
            out[name] = ["date", value.isoformat()]
        else:
            raise SandboxBug(f"parameter '{name}' has a type the worker protocol cannot carry")
    return out


def decode_params(encoded: dict[str, Any]) -> dict[str, object]:
    decoders: dict[str, Any] = {
        "bool": bool,
        "int": int,
        "str": str,
        "decimal": Decimal,
        "date": date.fromisoformat,
    }
    out: dict[str, object] = {}
    for name, (kind, value) in encoded.items():
        out[name] = decoders[kind](value)
    return out


def encode_source(source: TableSource) -> dict[str, str]:
    if source.is_file:
        return {"dataset_id": source.dataset_id, "format": source.format, "path": str(source.path)}
    encoded = {"dataset_id": source.dataset_id, "format": source.format, "table": source.table}
    if source.connection is not None:
        encoded["connection"] = source.connection
    return {k: v for k, v in encoded.items() if v is not None}


def decode_source(data: dict[str, str]) -> TableSource:
    if "path" not in data:
        return TableSource(
            data["dataset_id"],
            data["format"],  # type: ignore[arg-type]
            table=data.get("table"),
            connection=data.get("connection"),
        )
    return TableSource(data["dataset_id"], data["format"], Path(data["path"]))  # type: ignore[arg-type]


def encode_query(query: CompiledQuery) -> dict[str, Any]:
    return asdict(query)


def decode_query(data: dict[str, Any]) -> CompiledQuery:
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return CompiledQuery(**fields)


def encode_auxiliary(query: AuxiliaryQuery) -> dict[str, Any]:
    return asdict(query)


def decode_auxiliary(data: dict[str, Any]) -> AuxiliaryQuery:
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return AuxiliaryQuery(**fields)


def encode_limits(limits: Limits) -> dict[str, Any]:
    return asdict(limits)


def decode_limits(data: dict[str, Any]) -> Limits:
    return Limits(**data)


def encode_table(table: ResultTable, blobs: list[bytes] | None = None) -> dict[str, Any]:
    """``table`` for a frame. With ``blobs`` (the frame's binary values, appended to), its bytes
    values travel as binary: null in the rows, their places listed under ``binary``."""
    encoded: dict[str, Any] = {"columns": table.columns, "types": table.types, "rows": table.rows}
    if blobs is None:
        return encoded
    places, rows = [], []
    for r, row in enumerate(table.rows):
        values = list(row)
        for c, value in enumerate(values):
            if isinstance(value, bytes):
                places.append([r, c, len(blobs)])
                blobs.append(value)
                values[c] = None
        rows.append(values)
    if places:
        encoded.update(rows=rows, binary=places)
    return encoded


def decode_table(data: dict[str, Any], blobs: Sequence[bytes] = ()) -> ResultTable:
    """A table from ``encode_table``, its binary values taken from the frame's ``blobs``."""
    places = data.get("binary", ())
    rows = [list(row) for row in data["rows"]] if places else data["rows"]
    for place in places:
        try:
            r, c, i = place
            if not (type(r) is type(c) is type(i) is int and min(r, c, i) >= 0):
                raise TypeError
            if rows[r][c] is not None:
                raise ValueError
            rows[r][c] = blobs[i]
        except (TypeError, ValueError, IndexError):
            raise ProtocolError("a table's binary value is misplaced") from None
    return ResultTable(
        columns=tuple(data["columns"]),
        types=tuple(data["types"]),
        rows=tuple(tuple(row) for row in rows),
    )


# --- errors ---------------------------------------------------------------------------


def encode_error(exc: SandboxError) -> dict[str, Any]:
    if isinstance(exc, QueryTimeout):
        return {"type": "timeout", "timeout_s": exc.timeout_s}
    if isinstance(exc, ResourceLimitExceeded):
        return {"type": "limit", "category": exc.category.value, "limit": exc.limit}
    if isinstance(exc, ExecutionError):
        return {"type": "execution", "category": exc.category.value}
    if isinstance(exc, TemplateRejected):
        return {"type": "rejected", "reason": exc.reason}
    return {"type": "bug", "message": str(exc)[:300]}


def decode_error(data: dict[str, Any]) -> SandboxError:
    kind = data.get("type")
    try:
        if kind == "timeout":
            return QueryTimeout(float(data["timeout_s"]))
        if kind == "limit":
            return ResourceLimitExceeded(ExecutionCategory(data["category"]), str(data["limit"]))
        if kind == "execution":
            return ExecutionError(ExecutionCategory(data["category"]))
        if kind == "rejected":
            return TemplateRejected(str(data["reason"]))
        if kind == "bug":
            return SandboxBug(str(data["message"]))
    except (KeyError, ValueError, TypeError):
        pass
    return ExecutionError(ExecutionCategory.INTERNAL)
