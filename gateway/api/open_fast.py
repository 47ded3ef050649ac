"""The anonymous hot path: GET /open/v1/datasets/{id} and .../data.csv as plain ASGI.

Published results are served from the cache (`gateway.opendata.cache`) with the same rate
limit, counting and answers as the FastAPI routes in `open_routes.py` (which stay, for the
OpenAPI document and any request this parser does not take: it takes only those two paths
with no query or a lone `version=N`). Skipping the framework's routing and dependency
machinery is what lets one core serve thousands of reads a second.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api import open_routes
from gateway.errors import GatewayError, Problem, problem_for
from gateway.opendata.service import OpenService

log = logging.getLogger("insitu.open")
UNAVAILABLE = Problem(503, "unavailable", "Service unavailable", "the store cannot be read")
_PATH = re.compile(r"/open/v1/datasets/([a-z][a-z0-9-]{0,99})(/data\.csv)?")
_JSON = b"application/json"
_CSV = b"text/csv; charset=utf-8"
_PROBLEM = b"application/problem+json"


@dataclass(frozen=True, slots=True)
class _Route:
    path: str


_DOC_ROUTE = _Route("/open/v1/datasets/{open_id}")
_CSV_ROUTE = _Route("/open/v1/datasets/{open_id}/data.csv")


def _version(query: bytes) -> tuple[bool, int | None]:
    """(taken, version): only an empty query or `version=N` (1..1e6) is taken here."""
    if not query:
        return True, None
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    if len(pairs) != 1 or pairs[0][0] != "version" or not pairs[0][1].isdigit():
        return False, None
    version = int(pairs[0][1])
    return (1 <= version <= 1_000_000), version


class OpenFastPath:
    def __init__(self, app: ASGIApp, service: OpenService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        match = _PATH.fullmatch(scope["path"])
        taken, version = _version(scope.get("query_string", b"")) if match else (False, None)
        if match is None or not taken:
            await self.app(scope, receive, send)
            return
        open_id, csv = match.group(1), match.group(2) is not None
        scope["route"] = _CSV_ROUTE if csv else _DOC_ROUTE  # the request counter's label
        api_key = None
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                api_key = value.decode("latin-1")
        client = scope["client"][0] if scope.get("client") else "unknown"
        headers: list[tuple[bytes, bytes]] = []
        try:
            caller = open_routes.admit_client(self.service, client, api_key, open_id)
            entry = open_routes.published(self.service, caller, open_id, version)
            status, body, kind = 200, (entry.csv if csv else entry.json), (_CSV if csv else _JSON)
        except open_routes.RateLimited as exc:
            status, kind = 429, _PROBLEM
            body = _problem(open_routes.LIMITED.body(instance=scope["path"]))
            headers.append((b"retry-after", str(int(exc.retry_after)).encode()))
        except open_routes.UnknownKey:
            status, kind = 401, _PROBLEM
            body = _problem(open_routes.UNKNOWN_KEY.body(instance=scope["path"]))
        except GatewayError as exc:
            problem = problem_for(exc)
            status, kind = problem.status, _PROBLEM
            body = _problem(problem.body(instance=scope["path"]))
        except Exception:  # the store cannot be read: fail closed, as the routes do (503)
            log.exception("open read of %s failed", open_id)
            status, kind = 503, _PROBLEM
            body = _problem(UNAVAILABLE.body(instance=scope["path"]))
        headers += [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _problem(body: dict[str, object]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()
