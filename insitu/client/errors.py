"""Errors the client raises: one class per kind of RFC 9457 problem the gateway answers.

InsituError
├── TransportError        the gateway could not be reached (after the retries)
├── JobNotReleased        the job ended failed or suppressed (carries the job)
└── ProblemError          any problem+json answer (status, type, title, detail, body)
    ├── InvalidInput      400, 413, 422  bad parameters, documents, fields
    ├── Unauthenticated   401            no token, or a refused one
    ├── Denied            403            a policy or workflow decision (rule, reason_code)
    ├── NotFound          404
    ├── Conflict          409
    ├── Gone              410            a retired template version
    ├── BudgetExhausted   429            type budget-exhausted: the privacy budget is spent
    ├── TooManyRequests   429            any other 429 (retried first)
    └── Unavailable       503            the store or identity provider is down (retried first)
"""

from __future__ import annotations

from typing import Any

PROBLEM_BASE = "urn:insitu:problem:"


class InsituError(Exception):
    """Base of every error this client raises."""


class TransportError(InsituError):
    pass


class JobNotReleased(InsituError):
    def __init__(self, message: str, job: dict[str, Any]) -> None:
        super().__init__(message)
        self.job = job


class ProblemError(InsituError):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        self.type = str(body.get("type") or "about:blank")
        self.title = str(body.get("title") or "")
        self.detail = str(body.get("detail") or self.title or f"HTTP {status}")
        super().__init__(f"{status} {self.detail}")

    @property
    def slug(self) -> str:
        """The problem type without its URN prefix (``forbidden``, ``budget-exhausted`` …)."""
        return self.type.removeprefix(PROBLEM_BASE)


class InvalidInput(ProblemError):
    pass


class Unauthenticated(ProblemError):
    pass


class Denied(ProblemError):
    @property
    def rule(self) -> str | None:
        return self.body.get("rule")

    @property
    def reason_code(self) -> str | None:
        return self.body.get("reason_code")


class NotFound(ProblemError):
    pass


class Conflict(ProblemError):
    pass


class Gone(ProblemError):
    pass


class BudgetExhausted(ProblemError):
    @property
    def budget(self) -> dict[str, Any] | None:
        return self.body.get("budget")


class TooManyRequests(ProblemError):
    pass


class Unavailable(ProblemError):
    pass


_BY_STATUS: dict[int, type[ProblemError]] = {
    400: InvalidInput,
    401: Unauthenticated,
    403: Denied,
    404: NotFound,
    409: Conflict,
    410: Gone,
    413: InvalidInput,
    422: InvalidInput,
    429: TooManyRequests,
    503: Unavailable,
}


def problem_error(status: int, body: dict[str, Any]) -> ProblemError:
    """The typed error for a problem answer (by its `type` first, then its status)."""
    if str(body.get("type", "")).removeprefix(PROBLEM_BASE) == "budget-exhausted":
        return BudgetExhausted(status, body)
    return _BY_STATUS.get(status, ProblemError)(status, body)
