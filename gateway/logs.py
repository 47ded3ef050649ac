"""JSON logs: one object per line, with the request id of the HTTP request being served.

`configure()` is called by `insitu serve`; the access log (`insitu.access`) and every other
`insitu.*` logger then write lines such as
``{"time": "…", "level": "INFO", "logger": "insitu.access", "message": "request",
"request_id": "…", "method": "GET", "route": "/v1/jobs/{job_id}", "status": 200, …}``.
Messages are fixed phrases; values travel as fields, never spliced into the text.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

#: The request id of the request this task or thread serves ("" outside a request).
request_id: ContextVar[str] = ContextVar("insitu_request_id", default="")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id.get()
        if rid:
            entry["request_id"] = rid
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(level: int = logging.INFO) -> None:
    """Every log line of the process as JSON on stderr (uvicorn's included)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("insitu").setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
