"""The messages between the gateway and a sandbox worker process: typed, JSON, framed.

Frames are a 4-byte big-endian length and a UTF-8 JSON object, so nothing the worker sends
is ever unpickled or evaluated by the parent (a compromised worker can send bad data, not
code). Requests: ``init`` (limits and OS limits), ``run``, ``distinct_values``,
``infer_schema``. Replies: ``{"ok": true, ...}`` or ``{"ok": false, "error": {...}}`` with
only the error's type and category — never a driver message.
"""

from __future__ import annotations

import json
import os
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
_HEADER = 4


class ProtocolError(Exception):
    """The peer sent something that is not a well-formed frame (or hung up)."""


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    if len(body) > MAX_FRAME:
        raise ProtocolError("message too large")
    return len(body).to_bytes(_HEADER, "big") + body


def read_frame(fd: int) -> dict[str, Any]:
    """Read one frame from a blocking file descriptor (the worker's side)."""
    size = int.from_bytes(_read_exact(fd, _HEADER), "big")
    if size > MAX_FRAME:
        raise ProtocolError("frame too large")
    return decode(_read_exact(fd, size))


def decode(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body)
    except ValueError:
        raise ProtocolError("frame is not JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError("frame is not an object")
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


def encode_table(table: ResultTable) -> dict[str, Any]:
    return {"columns": table.columns, "types": table.types, "rows": table.rows}


def decode_table(data: dict[str, Any]) -> ResultTable:
    return ResultTable(
        columns=tuple(data["columns"]),
        types=tuple(data["types"]),
        rows=tuple(tuple(row) for row in data["rows"]),
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
