"""Prometheus metrics and request ids, one registry per app (tests build many apps in one
process).

| metric | labels | what |
|---|---|---|
| `insitu_http_requests_total` | method, route, status | requests by route template |
| `insitu_http_request_duration_seconds` | method, route | histogram |
| `insitu_jobs_finished_total` | kind, status | jobs this replica's workers finished |
| `insitu_job_duration_seconds` | kind | histogram, claim to release |
| `insitu_jobs_queued` | state | `accepted` and `running` jobs in the store (all replicas) |

`RequestContext` is the pure ASGI middleware that takes the caller's `X-Request-Id` (or makes
one), echoes it, counts and times the request, and writes the JSON access line.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.logs import request_id

access = logging.getLogger("insitu.access")
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class QueueDepth(Collector):
    """Read at scrape time from the store, so every replica reports the same queue."""

    def __init__(self, read: Callable[[], dict[str, int]]) -> None:
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "insitu_jobs_queued", "Jobs accepted or running, in the store", labels=["state"]
        )
        try:
            counts = self.read()
        except Exception:  # a store that cannot answer: no sample rather than a failed scrape
            counts = {}
        for state, n in sorted(counts.items()):
            gauge.add_metric([state], n)
        yield gauge


class Metrics:
    def __init__(self, queue_depth: Callable[[], dict[str, int]] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "insitu_http_requests",
            "HTTP requests by method, route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "insitu_http_request_duration_seconds",
            "HTTP request duration by method and route",
            ["method", "route"],
            registry=self.registry,
        )
        self.jobs = Counter(
            "insitu_jobs_finished",
            "Jobs finished by this replica's workers, by template kind and final status",
            ["kind", "status"],
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "insitu_job_duration_seconds",
            "Time from a worker's claim to the job's final state, by template kind",
            ["kind"],
            buckets=JOB_BUCKETS,
            registry=self.registry,
        )
        if queue_depth is not None:
            self.registry.register(QueueDepth(queue_depth))

    def job_finished(self, kind: str, status: str, seconds: float) -> None:
        self.jobs.labels(kind, status).inc()
        self.job_duration.labels(kind).observe(seconds)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = str(value.decode("latin-1"))
            if REQUEST_ID.fullmatch(text):
                return text
            break  # not a well-formed id: make our own rather than log the caller's bytes
    return uuid.uuid4().hex


class RequestContext:
    """Request id in and out, counts, durations and the access log (no task per request)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope)
        token = request_id.set(rid)
        status = {"code": 500}
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(scope["method"], route, str(status["code"])).inc()
            self.metrics.latency.labels(scope["method"], route).observe(elapsed)
            access.info(
                "request",
                extra={
                    "fields": {
                        "request_id": rid,
                        "method": scope["method"],
                        "route": route,
                        "status": status["code"],
                        "duration_ms": round(elapsed * 1000, 2),
                    }
                },
            )
            request_id.reset(token)
