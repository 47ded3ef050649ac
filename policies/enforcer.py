"""`PolicyEngine`: one immutable policy version evaluated by Casbin. The only module that imports
`casbin`.

The model is the packaged `model.conf`; rules are loaded through an in-memory adapter that
refuses to persist anything, so no file is ever written and no matcher text comes from outside.
`casbin.FastEnforcer` indexes rules by (role, action), the two fields the matcher compares
exactly, so a decision looks at a handful of candidates instead of every line (a plain
`Enforcer` scans them all; tests check both decide identically). The index is switched per call,
so evaluation holds a lock: `decide()` is thread-safe.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from importlib import resources
from typing import Any, Final

import casbin
from casbin.model import FastModel, fast_policy_filter
from casbin.persist import Adapter, load_policy_line

from policies.decisions import Decision, Request
from policies.errors import InvalidRule, PolicyBug, PolicyDenied
from policies.rules import Rule

MODEL_FILE: Final = "model.conf"
EVALUATION_FAILED: Final = "policy evaluation failed"
# Request/policy field positions compared with `==` by the matcher: sub (role) and act.
_CACHE_KEY_ORDER: Final = (0, 3)

_log = logging.getLogger(__name__)


def model_text() -> str:
    """The packaged Casbin model."""
    return resources.files("policies").joinpath(MODEL_FILE).read_text(encoding="utf-8")


class _RulesAdapter(Adapter):  # type: ignore[misc]  # casbin ships no type hints
    """Loads a fixed list of validated rules; every write is refused (engines are immutable)."""

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self._rules = rules

    def load_policy(self, model: Any) -> None:
        for rule in self._rules:
            load_policy_line(rule.text(), model)

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


def new_enforcer(rules: Iterable[Rule], *, fast: bool = True) -> Any:
    """A Casbin enforcer holding `rules` under the packaged model.

    `fast=False` gives the plain, scanning `casbin.Enforcer` (the reference in tests).
    """
    _silence_casbin()
    loaded = tuple(rules)
    if fast:
        model = FastModel(list(_CACHE_KEY_ORDER))
        model.load_model_from_text(model_text())
        return casbin.FastEnforcer(
            model, _RulesAdapter(loaded), cache_key_order=list(_CACHE_KEY_ORDER)
        )
    model = casbin.Enforcer.new_model(text=model_text())
    return casbin.Enforcer(model, _RulesAdapter(loaded))


class PolicyEngine:
    """Decisions under one policy version. Immutable: a policy change builds a new engine."""

    __slots__ = ("_enforcer", "_lock", "_rule_set", "_rules", "_version")
    _enforcer: Any
    _lock: threading.Lock
    _rule_set: frozenset[Rule]
    _rules: tuple[Rule, ...]
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
        enforcer = new_enforcer(distinct)
        loaded = {tuple(fields) for fields in enforcer.get_policy()}
        if loaded != {rule.fields() for rule in distinct}:
            raise PolicyBug("Casbin did not load exactly the given rules")
        for name, value in [
            ("_rules", tuple(distinct)),
            ("_rule_set", frozenset(distinct)),
            ("_version", version),
            ("_lock", threading.Lock()),
            ("_enforcer", enforcer),
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

    def _granting_rule(self, role: str, request: Request) -> Rule | None:
        """The rule that grants `request` to `role`, or `None`."""
        fields = (role, request.department, request.obj, request.action)
        with self._lock:
            policy = self._enforcer.get_model()["p"]["p"].policy
            with fast_policy_filter(policy, role, request.action):
                allowed, explain = self._enforcer.enforce_ex(*fields)
        if allowed is False:
            return None
        if allowed is not True:
            raise PolicyBug(f"Casbin answered {type(allowed).__name__}, not bool")
        rule = Rule(*explain)
        if rule not in self._rule_set or rule.role != role or rule.action != request.action:
            raise PolicyBug("Casbin explained an allow with a rule that cannot grant it")
        return rule

    def decide(self, request: Request) -> Decision:
        """Allowed if any of the request's roles is granted; any failure is a denial."""
        try:
            if not isinstance(request, Request):
                raise PolicyBug(f"decide() takes a Request, not {type(request).__name__}")
            for role in request.roles:
                rule = self._granting_rule(role, request)
                if rule is not None:
                    return Decision(
                        allowed=True,
                        rule=rule.text(),
                        reason=(
                            f"role {role} in department {request.department} may "
                            f"{request.action!r} on {request.obj!r} by rule '{rule.text()}'"
                        ),
                        policy_version=self._version,
                    )
            return Decision(
                allowed=False,
                rule=None,
                reason=f"no rule grants {request.describe()}",
                policy_version=self._version,
            )
        except Exception:
            _log.exception("%s (policy version %d); denying", EVALUATION_FAILED, self._version)
            return Decision(
                allowed=False, rule=None, reason=EVALUATION_FAILED, policy_version=self._version
            )

    def require(self, request: Request) -> Decision:
        """The allowing decision, or `PolicyDenied` carrying the denial."""
        decision = self.decide(request)
        if not decision.allowed:
            raise PolicyDenied(decision)
        return decision
