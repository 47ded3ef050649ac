"""Errors raised by `policies`.

```
PolicyError                 base of everything this package raises on purpose
├── InvalidRule             a rule (or a line of a policy file) is malformed; carries `line`
├── InvalidRequest          a request names something outside the vocabulary
├── PolicyDenied            `PolicyEngine.require()` refused; carries the `Decision`
└── PolicyBug               an internal invariant broke: a bug here, never the caller's fault
```

`InvalidRule` and `InvalidRequest` are also `ValueError`s, so a boundary that turns bad input
into a 422 can catch them generically. Messages say what to change; they never carry data values.
`decide()` never raises for a well-formed request: an evaluation failure is a denial (fail closed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from policies.decisions import Decision


class PolicyError(Exception):
    """Base class of every error raised by `policies`."""


class InvalidRule(PolicyError, ValueError):
    """A rule, or a line of a policy file, is malformed.

    `line` is the 1-based line number when the rule came from `parse_rules`, else `None`.
    """

    def __init__(self, message: str, *, line: int | None = None) -> None:
        self.line = line
        super().__init__(message if line is None else f"line {line}: {message}")


class InvalidRequest(PolicyError, ValueError):
    """A request names a role, department, object or action outside the vocabulary."""


class PolicyDenied(PolicyError):
    """The policy refused a request; `decision` says which rule was missing."""

    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        super().__init__(decision.reason)


class PolicyBug(PolicyError):
    """An internal invariant of `policies` broke. Report it; do not catch it to carry on."""
