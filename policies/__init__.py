"""insitu policies: the Casbin model, the default policy and a typed, fail-closed engine.

`PolicyEngine.decide(Request) -> Decision` names the granting rule or explains the denial with a
`ReasonCode`; `require()` raises `PolicyDenied`. Policies are exchanged as rule text or as YAML
documents (`policy_to_yaml` / `policy_from_yaml`). See README.md for the model and vocabulary.
"""

from policies.decisions import Decision, ReasonCode, Request
from policies.documents import MAX_DOCUMENT_BYTES
from policies.documents import from_yaml as policy_from_yaml
from policies.documents import to_yaml as policy_to_yaml
from policies.enforcer import PolicyEngine
from policies.errors import InvalidRequest, InvalidRule, PolicyBug, PolicyDenied, PolicyError
from policies.rules import (
    Rule,
    default_rules,
    diff_rules,
    format_rules,
    parse_rule_line,
    parse_rules,
)
from policies.vocabulary import (
    ACTIONS,
    CLASSIFICATIONS,
    OBJECTS,
    PURPOSE_STATES,
    SHARE_CLASSES,
    data_object,
    data_parts,
)

__all__ = [
    "ACTIONS",
    "CLASSIFICATIONS",
    "MAX_DOCUMENT_BYTES",
    "OBJECTS",
    "PURPOSE_STATES",
    "SHARE_CLASSES",
    "Decision",
    "InvalidRequest",
    "InvalidRule",
    "PolicyBug",
    "PolicyDenied",
    "PolicyEngine",
    "PolicyError",
    "ReasonCode",
    "Request",
    "Rule",
    "data_object",
    "data_parts",
    "default_rules",
    "diff_rules",
    "format_rules",
    "parse_rule_line",
    "parse_rules",
    "policy_from_yaml",
    "policy_to_yaml",
]
