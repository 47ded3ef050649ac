"""Gateway errors and the one table that maps every domain error to an RFC 9457 problem.

    GatewayError
    ├── InvalidInput          422  malformed YAML, unknown fields, bad parameters
    ├── Forbidden             403  a policy or workflow decision said no (carries the rule)
    ├── NotFound              404  unknown dataset, template, version or job
    ├── Conflict              409  already exists / wrong state for the action
    ├── Gone                  410  a retired template version (and jobs on it)
    ├── BudgetExhausted       429  the privacy budget cannot cover the job (carries what remains)
    ├── TooManyRequests       429  too many unfinished jobs or open waits (with Retry-After)
    └── Unavailable           503  store or audit log cannot write: nothing was released

Errors from `policies`, `sandbox` and `gateway.auth` (401 for tokens) are translated in
`problem_for()`.
No problem carries data values, SQL text, file paths, tokens or stack traces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.auth.errors import (
    AuthError,
    InvalidIdentity,
    IssuerKeyError,
    KeySourceUnavailable,
    TokenMissing,
)
from policies import InvalidRequest, InvalidRule, PolicyDenied, PolicyError
from sandbox import ExecutionError, ParameterError, SandboxError, TemplateRejected

PROBLEM_BASE = "urn:insitu:problem:"


class GatewayError(Exception):
    status = 500
    slug = "internal"
    title = "Internal error"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions


class InvalidInput(GatewayError):
    status, slug, title = 422, "invalid-input", "Invalid input"


class Forbidden(GatewayError):
    status, slug, title = 403, "forbidden", "Denied"


class NotFound(GatewayError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(GatewayError):
    status, slug, title = 409, "conflict", "Conflict"


class Gone(GatewayError):
    status, slug, title = 410, "gone", "Gone"


class BudgetExhausted(GatewayError):
    status, slug, title = 429, "budget-exhausted", "Privacy budget exhausted"


class TooManyRequests(GatewayError):
    """A bound on queued jobs or open waits; `retry_after` (seconds) becomes `Retry-After`."""

    status, slug, title = 429, "too-many-requests", "Too many requests"


class Unavailable(GatewayError):
    status, slug, title = 503, "unavailable", "Service unavailable"


@dataclass(frozen=True, slots=True)
class Problem:
    status: int
    slug: str
    title: str
    detail: str
    extensions: dict[str, Any] = field(default_factory=dict)

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance is not None:
            body["instance"] = instance
        body.update(self.extensions)
        return body


def problem_for(exc: BaseException) -> Problem:
    """The problem a domain error becomes. Unknown errors become a bare 500."""
    if isinstance(exc, GatewayError):
        return Problem(exc.status, exc.slug, exc.title, exc.detail, dict(exc.extensions))
    if isinstance(exc, PolicyDenied):
        d = exc.decision
        return Problem(
            403,
            "forbidden",
            "Denied",
            d.reason,
            {"rule": d.rule, "policy_version": d.policy_version},
        )
    if isinstance(exc, InvalidRule | InvalidRequest):
        return Problem(422, "invalid-policy", "Invalid policy input", str(exc))
    if isinstance(exc, ParameterError):
        return Problem(422, "invalid-parameter", "Invalid parameter", str(exc))
    if isinstance(exc, TemplateRejected):
        return Problem(422, "template-rejected", "Template rejected", str(exc))
    if isinstance(exc, ExecutionError):
        return Problem(500, "job-failed", "Job failed", str(exc))
    if isinstance(exc, IssuerKeyError):  # its messages name files: never shown over HTTP
        return Problem(500, "internal", "Internal error", "an internal error occurred")
    if isinstance(exc, InvalidIdentity):
        return Problem(422, "invalid-identity", "Invalid identity", str(exc))
    if isinstance(exc, KeySourceUnavailable):
        return Problem(503, "unavailable", "Identity provider unavailable", "cannot verify tokens")
    if isinstance(exc, TokenMissing):
        return Problem(
            401, "unauthenticated", "Authentication required", "a bearer token is required"
        )
    if isinstance(exc, AuthError):
        return Problem(401, "unauthenticated", "Authentication required", str(exc))
    if isinstance(exc, PolicyError | SandboxError):
        return Problem(500, "internal", "Internal error", "an internal error occurred")
    return Problem(500, "internal", "Internal error", "an internal error occurred")
