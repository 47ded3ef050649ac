"""Errors raised by the sandbox.

Exception tree::

    SandboxError                      base of everything raised here
    ├── TemplateRejected(reason)      a template (SQL or parameter spec) fails a static check;
    │                                 the template author can fix it
    ├── ParameterError(parameter, message)
    │                                 a job's parameter value is missing, extra or outside its
    │                                 domain; names the parameter and the rule, never the value
    ├── ExecutionError(category)      the engine failed while running; generic on purpose: it
    │   │                             never carries data values, SQL text or file paths
    │   ├── QueryTimeout(timeout_s)   the query ran longer than its limit and was interrupted
    │   └── ResourceLimitExceeded(category, limit)
    │                                 the result or the memory exceeded a configured limit
    └── SandboxBug(message)           an internal invariant broke (a caller or this package is
                                      wrong); never the user's fault

The gateway maps these to HTTP problems in one table; nothing here knows about HTTP.
Engine errors are raised outside the ``except`` block that caught the driver error, so the
driver's message (which may quote values or paths) is not even chained as ``__context__``.
"""

from __future__ import annotations

from enum import StrEnum


class SandboxError(Exception):
    """Base class of every error raised by the sandbox."""


class TemplateRejected(SandboxError):
    """A template failed a static check; ``reason`` says which and how to fix it."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"template rejected: {reason}")


class ParameterError(SandboxError):
    """A parameter value was refused; the message names the rule, never the value."""

    def __init__(self, parameter: str, message: str) -> None:
        self.parameter = parameter
        self.message = message
        super().__init__(f"parameter '{parameter}' {message}")


class ExecutionCategory(StrEnum):
    """Why a query failed while running. The only detail an ExecutionError carries."""

    # Data-dependent failures (a cast, an overflow, a division by zero) are all reported as
    # DATA: which one happened would say something about the values. The three older names
    # stay for callers that match on them; the engines no longer raise them.
    DATA = "data"
    CONVERSION = "conversion"
    OVERFLOW = "overflow"
    DIVISION = "division"
    OUT_OF_MEMORY = "out_of_memory"
    INTERRUPTED = "interrupted"
    TIMEOUT = "timeout"
    ROW_LIMIT = "row_limit"
    BYTE_LIMIT = "byte_limit"
    REFUSED = "refused"  # the engine's own lock-down blocked the statement
    SOURCE_UNAVAILABLE = "source_unavailable"  # a data file is missing or unreadable
    WORKER_LOST = "worker_lost"  # the sandbox worker process died or was killed mid-job
    INTERNAL = "internal"


class ExecutionError(SandboxError):
    """The query failed while running. Carries a category and nothing else."""

    def __init__(self, category: ExecutionCategory, message: str | None = None) -> None:
        self.category = category
        super().__init__(message or f"the query failed while running ({category})")


class QueryTimeout(ExecutionError):
    """The query ran longer than its time limit and was interrupted."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        super().__init__(
            ExecutionCategory.TIMEOUT,
            f"the query did not finish within {timeout_s:g} s (timeout)",
        )


class ResourceLimitExceeded(ExecutionError):
    """The result (rows, bytes) or the working memory exceeded a configured limit."""

    def __init__(self, category: ExecutionCategory, limit: str) -> None:
        self.limit = limit
        super().__init__(category, f"the query exceeded its limit of {limit} ({category})")


class SandboxBug(SandboxError):
    """An internal invariant broke: a bug in the caller or in this package."""
