"""`PolicyEngine`: one immutable policy version evaluated by Casbin. The only module that imports
`casbin`.

The model is the packaged `model.conf`; rules are loaded through an in-memory adapter that
refuses to persist anything, so no file is ever written and no matcher text comes from outside.

Decisions at scale: a plain `casbin.Enforcer` evaluates the matcher against every line (about
300 ms per decision at 100,000 lines). The rule grammar allows a `*` only as a whole last path
segment, so the rule objects that can match a request object are exactly its prefixes
(`vocabulary.object_patterns`), and the departments that can match are the caller's and `*`.
The engine therefore looks the candidate rules up in a hash index keyed by
(role, department, object pattern, action), at most eight lookups per role, and lets Casbin's
matcher decide over those candidates only. A differential test checks that decisions equal the
reference `Enforcer`'s over every line. Evaluation swaps the candidate list into the enforcer,
so it holds a lock: `decide()` is thread-safe.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from importlib import resources
from typing import Any, Final

import casbin
from casbin.persist import Adapter, load_policy_line

from policies.decisions import Decision, ReasonCode, Request
from policies.errors import InvalidRule, PolicyBug, PolicyDenied
from policies.explain import Scopes, denial
from policies.rules import PTYPE, Rule
from policies.vocabulary import ANY_DEPARTMENT, data_parts, object_patterns

MODEL_FILE: Final = "model.conf"
EVALUATION_FAILED: Final = "policy evaluation failed"

_log = logging.getLogger(__name__)


def model_text() -> str:
    """The packaged Casbin model."""
    return resources.files("policies").joinpath(MODEL_FILE).read_text(encoding="utf-8")


def casbin_line(rule: Rule) -> str:
    """The rule as Casbin reads it: every field of the model, the purpose included."""
    return ", ".join((PTYPE, *rule.fields()))


class _RulesAdapter(Adapter):  # type: ignore[misc]  # casbin ships no type hints
    """Loads a fixed list of validated rules; every write is refused (engines are immutable)."""

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self._rules = rules

    def load_policy(self, model: Any) -> None:
        for rule in self._rules:
            load_policy_line(casbin_line(rule), model)

    def save_policy(self, model: Any) -> None:
        raise PolicyBug("a PolicyEngine is immutable; build a new one for a new policy version")

    def add_policy(self, sec: str, ptype: str, rule: Any) -> None:
        self.save_policy(None)

    def remove_policy(self, sec: str, ptype: str, rule: Any) -> None:
        self.save_policy(None)

    def remove_filtered_policy(self, sec: str, ptype: str, field_index: int, *values: Any) -> None:
        self.save_policy(None)


def _silence_casbin() -> None:
    """Casbin logs every request (denials at WARNING) and only *disables* its loggers, which the
    next ``logging.config.dictConfig(disable_existing_loggers=False)`` (uvicorn's) re-enables.
    Our decisions carry their own explanation, so Casbin may only speak about its own errors."""
    for name in ("casbin", "casbin.enforcer", "casbin.policy", "casbin.role"):
        logging.getLogger(name).setLevel(logging.ERROR)


class _ParsedOnce(casbin.Enforcer):  # type: ignore[misc]  # casbin ships no type hints
    """The plain enforcer, keeping the parsed matcher between calls.

    `Enforcer.enforce_ex` parses the matcher text into an AST on every call; the model's matcher
    never changes, and the engine evaluates under its lock, so one parsed expression serves.
    """

    def _get_expression(self, expr: str, functions: Any = None) -> Any:
        parsed: dict[str, Any] = self.__dict__.setdefault("_insitu_parsed", {})
        expression = parsed.get(expr)
        if expression is None:
            expression = casbin.Enforcer._get_expression(expr, functions)
            parsed[expr] = expression
        return expression


def new_enforcer(rules: Iterable[Rule]) -> Any:
    """A plain, scanning `casbin.Enforcer` holding `rules` under the packaged model.

    This is the reference the engine is checked against (tests and `bench/policy.py`).
    """
    _silence_casbin()
    model = casbin.Enforcer.new_model(text=model_text())
    return casbin.Enforcer(model, _RulesAdapter(tuple(rules)))


_Key = tuple[str, str, str, str]  # role, department, object (pattern), action


class PolicyEngine:
    """Decisions under one policy version. Immutable: a policy change builds a new engine."""

    __slots__ = ("_assertion", "_enforcer", "_index", "_lock", "_rules", "_scopes", "_version")
    _assertion: Any
    _enforcer: Any
    _index: dict[_Key, tuple[Rule, ...]]
    _lock: threading.Lock
    _rules: tuple[Rule, ...]
    _scopes: Scopes
    _version: int

    def __init__(self, rules: Iterable[Rule], *, version: int) -> None:
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise InvalidRule(f"policy version must be a non-negative int, not {version!r}")
        distinct: dict[Rule, None] = {}
        for rule in rules:
            if not isinstance(rule, Rule):
                raise InvalidRule(
                    f"a policy is made of Rule values, not {type(rule).__name__}; "
                    "use parse_rules() for policy text"
                )
            distinct[rule] = None
        _silence_casbin()
        model = casbin.Enforcer.new_model(text=model_text())
        enforcer = _ParsedOnce(model, _RulesAdapter(tuple(distinct)))
        assertion = enforcer.get_model()["p"]["p"]
        loaded = {tuple(fields) for fields in assertion.policy}
        if loaded != {rule.fields() for rule in distinct} or len(assertion.policy) != len(distinct):
            raise PolicyBug("Casbin did not load exactly the given rules")
        index: dict[_Key, list[Rule]] = {}
        for rule in distinct:
            index.setdefault((rule.role, rule.department, rule.obj, rule.action), []).append(rule)
        # Evaluation swaps candidate lists into the assertion; the full list is not needed.
        assertion.policy = []
        for name, value in [
            ("_rules", tuple(distinct)),
            ("_index", {key: tuple(found) for key, found in index.items()}),
            ("_scopes", Scopes.of(distinct)),
            ("_version", version),
            ("_lock", threading.Lock()),
            ("_enforcer", enforcer),
            ("_assertion", assertion),
        ]:
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a PolicyEngine is immutable; build a new one for a new version")

    def __delattr__(self, name: str) -> None:
        self.__setattr__(name, None)

    @classmethod
    def from_rules(cls, rules: Iterable[Rule], *, version: int) -> PolicyEngine:
        """An engine for `rules` (duplicates dropped, first occurrence kept) as `version`."""
        return cls(rules, version=version)

    @property
    def version(self) -> int:
        return self._version

    def rules(self) -> tuple[Rule, ...]:
        """The distinct rules, in the order given."""
        return self._rules

    def __repr__(self) -> str:
        return f"PolicyEngine(version={self._version}, rules={len(self._rules)})"

    def candidates(self, role: str, request: Request) -> list[Rule]:
        """The rules that can match `request` for `role`, in policy order of their keys."""
        found: list[Rule] = []
        for department in (request.department, ANY_DEPARTMENT):
            for pattern in object_patterns(request.obj):
                found.extend(self._index.get((role, department, pattern, request.action), ()))
        return found

    def _granting_rule(self, role: str, request: Request, candidates: list[Rule]) -> Rule | None:
        """The candidate Casbin's matcher grants `request` to `role` by, or `None`."""
        fields = (role, request.department, request.obj, request.action, request.purpose)
        with self._lock:
            self._assertion.policy = [list(rule.fields()) for rule in candidates]
            try:
                allowed, explain = self._enforcer.enforce_ex(*fields)
            finally:
                self._assertion.policy = []
        if allowed is False:
            return None
        if allowed is not True:
            raise PolicyBug(f"Casbin answered {type(allowed).__name__}, not bool")
        rule = Rule(*explain)
        if rule not in candidates or rule.role != role or rule.action != request.action:
            raise PolicyBug("Casbin explained an allow with a rule that cannot grant it")
        return rule

    def decide(self, request: Request) -> Decision:
        """Allowed if any of the request's roles is granted; any failure is a denial."""
        dataset: str | None = None
        try:
            if not isinstance(request, Request):
                raise PolicyBug(f"decide() takes a Request, not {type(request).__name__}")
            parts = data_parts(request.obj)
            dataset = parts[2] if parts else None
            near: dict[str, list[Rule]] = {}
            for role in request.roles:
                candidates = self.candidates(role, request)
                rule = self._granting_rule(role, request, candidates) if candidates else None
                if rule is not None:
                    return Decision(
                        allowed=True,
                        rule=rule.text(),
                        reason=(
                            f"role {role} in department {request.department} may "
                            f"{request.action!r} on {request.obj!r} by rule '{rule.text()}'"
                        ),
                        policy_version=self._version,
                        reason_code=ReasonCode.GRANTED,
                        dataset=dataset,
                    )
                near[role] = candidates
            code, reason = denial(request, self._scopes, near)
            return Decision(
                allowed=False,
                rule=None,
                reason=reason,
                policy_version=self._version,
                reason_code=code,
                dataset=dataset,
            )
        except Exception:
            _log.exception("%s (policy version %d); denying", EVALUATION_FAILED, self._version)
            return Decision(
                allowed=False,
                rule=None,
                reason=EVALUATION_FAILED,
                policy_version=self._version,
                reason_code=ReasonCode.EVALUATION_FAILED,
                dataset=dataset,
            )

    def require(self, request: Request) -> Decision:
        """The allowing decision, or `PolicyDenied` carrying the denial."""
        decision = self.decide(request)
        if not decision.allowed:
            raise PolicyDenied(decision)
        return decision
