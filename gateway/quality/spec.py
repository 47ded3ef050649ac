"""Quality rules as a dataset's owner writes them (the `quality:` section of the document).

    quality:
      rules:
        - {rule: required, columns: [enterprise_id, district], severity: must}
        - {rule: key_unique, columns: [enterprise_id], severity: must}
        - {rule: allowed_values, column: status, values: [active, closed], severity: should}
        - {rule: allowed_values, column: enterprise_id, pattern: "[0-9A-Z]{18}", severity: must}
        - {rule: max_null_rate, column: industry, max: 0.05, severity: should}
        - {rule: max_staleness, hours: 48, severity: should}

`must` refuses a registration or snapshot that breaks it (naming the rule and column);
`should` is shown in the catalogue and alerts the owner.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

NAME = r"^[a-z][a-z0-9_]{0,62}$"
Severity = Literal["must", "should"]
Value = Annotated[StrictStr, Field(min_length=1, max_length=128)] | StrictInt


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    severity: Severity = "should"


class Required(_Rule):
    """Each column is present in the source and holds no NULL (关键字段不缺失)."""

    rule: Literal["required"]
    columns: list[Annotated[str, Field(pattern=NAME)]] = Field(min_length=1, max_length=100)


class KeyUnique(_Rule):
    """No two rows share the key (all key columns non-NULL)."""

    rule: Literal["key_unique"]
    columns: list[Annotated[str, Field(pattern=NAME)]] = Field(min_length=1, max_length=10)


class AllowedValues(_Rule):
    """Every non-NULL value is one of `values` and/or fully matches `pattern` (RE2)."""

    rule: Literal["allowed_values"]
    column: str = Field(pattern=NAME)
    values: list[Value] | None = Field(default=None, min_length=1, max_length=1000)
    pattern: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error:
                raise ValueError("the pattern is not a valid regular expression") from None
        return value


class MaxNullRate(_Rule):
    rule: Literal["max_null_rate"]
    column: str = Field(pattern=NAME)
    max: float = Field(ge=0, le=1)


class MaxStaleness(_Rule):
    """The snapshot is at most `hours` old (else the dataset's update cycle decides)."""

    rule: Literal["max_staleness"]
    hours: float = Field(gt=0, le=24 * 3660)


QualityRule = Annotated[
    Required | KeyUnique | AllowedValues | MaxNullRate | MaxStaleness, Field(discriminator="rule")
]


class QualitySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    rules: list[QualityRule] = Field(default_factory=list, max_length=200)

    @model_validator(mode="after")
    def _one_key(self) -> QualitySpec:
        if sum(isinstance(r, KeyUnique) for r in self.rules) > 1:
            raise ValueError("at most one key_unique rule (the dataset's key)")
        return self

    def columns(self) -> set[str]:
        """Every column a rule names (the document checks they are declared)."""
        named: set[str] = set()
        for rule in self.rules:
            if isinstance(rule, Required | KeyUnique):
                named.update(rule.columns)
            elif isinstance(rule, AllowedValues | MaxNullRate):
                named.add(rule.column)
        return named
