"""HTTP to the gateway: the bearer token, problem answers as typed errors, and retries.

A 503, or a 429 that is not an exhausted privacy budget, is retried with exponential backoff
(0.5 s, 1 s, 2 s … capped at `max_backoff`), waiting what the answer's `Retry-After` asks
when it says (seconds or an HTTP date, capped likewise); so are connection failures. Job
submissions carry an `Idempotency-Key`, so a retried submission never creates a second job.
"""

from __future__ import annotations

import email.utils
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from insitu.client.errors import BudgetExhausted, TransportError, problem_error

RETRIED = frozenset({429, 503})


def retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks to wait (None when absent or unreadable)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class Transport:
    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        timeout: float = 330.0,
        http: httpx.Client | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = http or httpx.Client(
            base_url=self.url, timeout=httpx.Timeout(timeout, connect=10.0)
        )
        self.http.headers.update(headers)
        self.sleep = time.sleep  # tests may replace it

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The answer (2xx), or a typed error once retries are spent."""
        attempt = 0
        while True:
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt >= self.retries:
                    raise TransportError(
                        f"cannot reach the gateway at {self.url} ({type(exc).__name__})"
                    ) from None
                self.sleep(self._delay(attempt, None))
                attempt += 1
                continue
            if response.status_code < 400:
                return response
            error = problem_error(response.status_code, _problem_body(response))
            if (
                response.status_code not in RETRIED
                or isinstance(error, BudgetExhausted)
                or attempt >= self.retries
            ):
                raise error
            self.sleep(self._delay(attempt, retry_after(response.headers.get("Retry-After"))))
            attempt += 1

    def _delay(self, attempt: int, asked: float | None) -> float:
        if asked is not None:
            return min(asked, self.max_backoff)
        return min(self.backoff * float(2**attempt), self.max_backoff)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()


def _problem_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"status": response.status_code, "detail": response.reason_phrase}
    return body if isinstance(body, dict) else {"status": response.status_code}
