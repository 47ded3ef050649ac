"""A sandbox worker process: ``python -m sandbox.engines.worker``, driven over its stdin/stdout.

Started by ``sandbox.engines.process.ProcessEngine``. It keeps the protocol on private copies
of fds 0 and 1 and points the standard streams at /dev/null, so nothing the engine prints
can corrupt a frame. The first message (``init``) sets the OS limits on this process
(``sandbox.engines.oslimits``) before DuckDB is imported; then each ``run`` gets a locked-down
DuckDB connection (``DuckDBEngine``, which keeps one spare instance open ahead of the next
job) and a CPU-time budget. Errors go back as their type and category only.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from sandbox.dp import snapshot as dp_snapshot
from sandbox.engines import oslimits, protocol
from sandbox.errors import ExecutionCategory, ExecutionError, SandboxError
from sandbox.quality.profile import ProfileRequest


def _private_streams() -> tuple[int, int]:
    fd_in, fd_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    return fd_in, fd_out


def _handle(
    engine: Any, limits: oslimits.OsLimits, landlock_abi: int, message: dict[str, Any]
) -> dict[str, Any]:
    op = message.get("op")
    if op == "run":
        oslimits.cpu_budget(limits.cpu_s)
        query = protocol.decode_query(message["query"])
        sources = {s["dataset_id"]: protocol.decode_source(s) for s in message["sources"]}
        params = protocol.decode_params(message["params"])
        auxiliary = [protocol.decode_auxiliary(a) for a in message.get("auxiliary", [])]
        if not auxiliary:
            table = engine.run(query, sources, params)
            return {"ok": True, "table": protocol.encode_table(table), "auxiliary": []}
        extra = protocol.decode_params(message.get("extra", {}))
        main, aux = engine.run_with_auxiliary(query, sources, params, auxiliary, extra)
        blobs: list[bytes] = []  # the census's member hashes, as binary after the JSON
        return {
            "ok": True,
            "table": protocol.encode_table(main),
            "auxiliary": [protocol.encode_table(t, blobs) for t in aux],
            protocol.BLOBS: blobs,
        }
    if op == "dp_run":
        oslimits.cpu_budget(limits.cpu_s)
        request = dp_snapshot.decode_run(message["dp"])
        sources = {s["dataset_id"]: protocol.decode_source(s) for s in message["sources"]}
        params = protocol.decode_params(message["params"])
        outcome = engine.run_dp(request, sources, params)
        return {"ok": True, **dp_snapshot.encode_outcome(outcome)}
    if op == "distinct_values":
        oslimits.cpu_budget(limits.cpu_s)
        source = protocol.decode_source(message["source"])
        values = engine.distinct_values(source, message["column"], message["limit"])
        return {"ok": True, "values": list(values)}
    if op == "infer_schema":
        oslimits.cpu_budget(limits.cpu_s)
        columns = engine.infer_schema(protocol.decode_source(message["source"]))
        return {"ok": True, "columns": [list(c) for c in columns]}
    if op == "profile":
        oslimits.cpu_budget(limits.cpu_s)
        source = protocol.decode_source(message["source"])
        wanted = ProfileRequest.decode(message["request"])
        return {"ok": True, "profile": engine.profile(source, wanted).encode()}
    if op == "prepare":  # a database made ahead of the jobs of a worker about to retire
        oslimits.cpu_budget(limits.cpu_s)
        mounted = [protocol.decode_source(s) for s in message["sources"]]
        return {"ok": True, "made": engine.prepare(mounted)}
    if op == "limits":
        return {"ok": True, "limits": {**oslimits.current(), "landlock": landlock_abi}}
    return {"ok": False, "error": {"type": "bug", "message": "unknown operation"}}


def main() -> int:
    if len(sys.argv) > 1:
        oslimits.die_with_parent(int(sys.argv[1]))
    fd_in, fd_out = _private_streams()
    init = protocol.read_frame(fd_in)
    limits = oslimits.OsLimits(**init["os"])
    landlock_abi = oslimits.apply(limits)
    from sandbox.engines.duckdb import DuckDBEngine  # noqa: PLC0415 - after the limits

    engine = DuckDBEngine(protocol.decode_limits(init["limits"]), spares=1)
    protocol.write_all(fd_out, protocol.frame({"ok": True, "pid": os.getpid()}))
    while True:
        try:
            message = protocol.read_frame(fd_in)
        except protocol.ProtocolError:
            break  # the parent hung up: exit
        try:
            reply = _handle(engine, limits, landlock_abi, message)
        except SandboxError as exc:
            reply = {"ok": False, "error": protocol.encode_error(exc)}
        except MemoryError:
            error = ExecutionError(ExecutionCategory.OUT_OF_MEMORY)
            reply = {"ok": False, "error": protocol.encode_error(error)}
        except Exception:  # nothing of the exception may leave
            error = ExecutionError(ExecutionCategory.INTERNAL)
            reply = {"ok": False, "error": protocol.encode_error(error)}
        blobs = reply.pop(protocol.BLOBS, [])
        protocol.write_all(fd_out, protocol.frame(reply, blobs))
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
