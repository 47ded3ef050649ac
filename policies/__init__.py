"""insitu policies: the Casbin model, the default policy and a typed, fail-closed engine.

`PolicyEngine.decide(Request) -> Decision` names the granting rule or explains the denial;
`require()` raises `PolicyDenied`. See README.md for the model and its vocabulary.
"""

from policies.decisions import Decision, Request
from policies.enforcer import PolicyEngine
from policies.errors import InvalidRequest, InvalidRule, PolicyBug, PolicyDenied, PolicyError
from policies.rules import Rule, default_rules, format_rules, parse_rules
from policies.vocabulary import ACTIONS, CLASSIFICATIONS, OBJECTS, SHARE_CLASSES, data_object

__all__ = [
    "ACTIONS",
    "CLASSIFICATIONS",
    "OBJECTS",
    "SHARE_CLASSES",
    "Decision",
    "InvalidRequest",
    "InvalidRule",
    "PolicyBug",
    "PolicyDenied",
    "PolicyEngine",
    "PolicyError",
    "Request",
    "Rule",
    "data_object",
    "default_rules",
    "format_rules",
    "parse_rules",
]
