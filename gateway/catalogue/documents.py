"""The YAML/JSON documents users write: datasets and templates (DESIGN.md §8).

Pydantic models with ``extra="forbid"``: an unknown or misspelt field is an error, never ignored.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictInt,
    StrictStr,
    ValidationError,
    model_serializer,
    model_validator,
)

from gateway.dp.specs import DatasetPrivacySpec, DpQuerySpec
from gateway.errors import InvalidInput
from gateway.findings.spec import FindingsSpec
from gateway.quality.spec import AllowedValues, QualitySpec

DEPT = r"[a-z][a-z0-9_]{0,62}"
NAME = r"[a-z][a-z0-9_]{0,62}"


class ShareClass(StrEnum):
    UNCONDITIONAL = "unconditional"  # 无条件共享
    CONDITIONAL = "conditional"  # 有条件共享
    NONE = "none"  # 不予共享


class Classification(StrEnum):
    GENERAL = "general"  # 一般
    IMPORTANT = "important"  # 重要
    CORE = "core"  # 核心


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


FILE_FORMATS = ("parquet", "csv")
TABLE_NAME = r"[A-Za-z_][A-Za-z0-9_]{0,127}(\.[A-Za-z_][A-Za-z0-9_]{0,127}){0,2}"


class SourceSpec(Strict):
    """Where the rows are: a file under the provider's data directory (``parquet``, ``csv``),
    or, on the Spark engine, a ``table`` of the cluster's catalogue or a ``jdbc`` table reached
    through a ``connection`` named in the gateway's settings (its URL and credentials are
    never part of this document)."""

    format: Literal["parquet", "csv", "table", "jdbc"]
    path: str | None = Field(default=None, min_length=1, max_length=500)
    table: str | None = Field(default=None, pattern=rf"^{TABLE_NAME}$")
    connection: str | None = Field(default=None, pattern=rf"^{NAME}$")

    @model_validator(mode="after")
    def _one_location(self) -> SourceSpec:
        if self.format in FILE_FORMATS:
            if self.path is None or self.table is not None or self.connection is not None:
                raise ValueError(f"a {self.format} source has a path and no table or connection")
        elif self.path is not None or self.table is None:
            raise ValueError(f"a {self.format} source names a table and no path")
        elif (self.format == "jdbc") != (self.connection is not None):
            raise ValueError("a jdbc source, and only it, names a connection")
        return self

    @property
    def is_file(self) -> bool:
        return self.format in FILE_FORMATS

    @model_serializer(mode="wrap")
    def _without_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # a file source is stored as it always was: {format, path}
        data: dict[str, Any] = handler(self)
        return {key: value for key, value in data.items() if value is not None}


MAX_DECLARED_VALUES = 1000
DeclaredValue = Annotated[StrictStr, Field(min_length=1, max_length=128)] | StrictInt


class ColumnSpec(Strict):
    name: str = Field(pattern=rf"^{NAME}$")
    type: str = Field(pattern=r"^[A-Z][A-Z0-9_ (),]{0,40}$")
    sensitivity: Literal["identifier", "quasi_identifier", "sensitive", "public"]
    # The column's public domain, declared by the owner (e.g. the districts of a city). A `dp`
    # template groups by public keys only over declared values: a key set read from the data
    # would itself disclose which values occur.
    values: list[DeclaredValue] | None = Field(
        default=None, min_length=1, max_length=MAX_DECLARED_VALUES
    )
    # Whether a value says something about a natural person. Fail closed: a column is personal
    # unless its owner marks it otherwise (an enterprise code is an identifier, not personal).
    # Only non-personal, non-sensitive columns may appear in the rows of a `list` template.
    personal: bool = True
    description: str = Field(default="", max_length=500)

    @model_validator(mode="after")
    def _values_are_public(self) -> ColumnSpec:
        if self.values is None:
            return self
        if self.sensitivity != "public":
            raise ValueError(f"column {self.name}: only a public column declares its values")
        if len(set(self.values)) != len(self.values):
            raise ValueError(f"column {self.name}: declared values repeat")
        return self


class DominanceSpec(Strict):
    n: int = Field(ge=1, le=10)
    k: float = Field(gt=0, le=1)


class DisclosureSpec(Strict):
    """The owner's disclosure rules (sandbox/disclosure/rules.py); null switches a rule off."""

    min_group_size: int = Field(default=10, ge=1, le=100_000)
    dominance: DominanceSpec | None = DominanceSpec(n=2, k=0.9)
    p_percent: float | None = Field(default=10.0, gt=0, le=100)
    rounding: int | None = Field(default=None, ge=1, le=1000)
    secondary_suppression: bool = True


class OpenClass(StrEnum):
    """Open class of the resource catalogue (开放属性)."""

    OPEN = "open"  # 无条件开放
    CONDITIONAL = "conditional"  # 有条件开放
    CLOSED = "closed"  # 不予开放


class VerifyLimits(Strict):
    """The owner's bounds on `verify` templates over a dataset (against enumeration).

    A request carries at most `max_keys_per_request` keys; a department verifies at most
    `max_keys_per_day` (key x parameter set) pairs a day. A sweep -- at least `sweep_min_keys`
    keys in a day of which at most `sweep_max_match_rate` matched -- is refused and reported
    to the owner. One key may be asked against at most `max_parameter_sets_per_key` distinct
    sets of the template's other parameters per `parameter_sets_period` (a key asked in one
    district after another locates its holder): more is refused as a sweep by spread and
    reported to the owner.
    """

    max_keys_per_request: int = Field(default=100, ge=1, le=1000)
    max_keys_per_day: int = Field(default=1000, ge=1, le=1_000_000)
    sweep_min_keys: int = Field(default=50, ge=1, le=1_000_000)
    sweep_max_match_rate: float = Field(default=0.1, ge=0, le=1)
    max_parameter_sets_per_key: int = Field(default=3, ge=1, le=1000)
    parameter_sets_period: Literal["day", "month", "year"] = "month"


class DatasetSpec(Strict):
    id: str = Field(pattern=rf"^{DEPT}\.{NAME}$")
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=4000)
    provider: str = Field(pattern=rf"^{DEPT}$")
    source: SourceSpec
    share_class: ShareClass
    classification: Classification
    update_cycle: str = Field(default="unspecified", max_length=40)
    privacy_unit: str | None = None
    columns: list[ColumnSpec] = Field(min_length=1, max_length=500)
    disclosure: DisclosureSpec = DisclosureSpec()
    verify: VerifyLimits = VerifyLimits()
    # Government information-resource catalogue (政务信息资源目录) fields.
    resource_code: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9./-]{0,63}$")
    share_conditions: str = Field(default="", max_length=1000)  # 共享条件
    open_class: OpenClass = OpenClass.CLOSED  # 开放属性
    keywords: list[str] = Field(default_factory=list, max_length=20)
    privacy: DatasetPrivacySpec | None = None  # DP budget caps (gateway/dp/specs.py)
    quality: QualitySpec | None = None  # data-quality rules (gateway/quality/spec.py)

    @model_validator(mode="after")
    def _consistent(self) -> DatasetSpec:
        if self.id.split(".", 1)[0] != self.provider:
            raise ValueError("the id must start with the provider department: <provider>.<name>")
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError("column names must be unique")
        if self.privacy_unit is not None and self.privacy_unit not in names:
            raise ValueError("privacy_unit must name one of the columns")
        if self.share_class is ShareClass.NONE and self.open_class is not OpenClass.CLOSED:
            raise ValueError("a dataset that is not shared (share_class none) cannot be open")
        if self.privacy is not None and self.privacy_unit is None:
            raise ValueError("a privacy budget needs a privacy_unit")
        if self.quality is not None:
            unknown = sorted(self.quality.columns() - set(names))
            if unknown:
                raise ValueError(f"quality rules name undeclared columns: {', '.join(unknown)}")
            for rule in self.quality.rules:
                if isinstance(rule, AllowedValues) and rule.values is None and rule.pattern is None:
                    raise ValueError(f"allowed_values on {rule.column} needs values or a pattern")
        return self


class OutputSpec(Strict):
    count_column: str | None = Field(default=None, pattern=rf"^{NAME}$")


class TemplateKindName(StrEnum):
    AGGREGATE = "aggregate"
    DP = "dp"
    VERIFY = "verify"
    LIST = "list"


class VerifyKeySpec(Strict):
    """The key a requester brings to a `verify` template, bound as `:<name>` in its SQL."""

    name: str = Field(pattern=rf"^{NAME}$")
    type: Literal["string", "integer"] = "string"
    pattern: str | None = Field(default=None, max_length=200)
    max_length: int = Field(default=64, ge=1, le=256)


class VerifySpec(Strict):
    key: VerifyKeySpec
    answer: Literal["match", "count"] = "match"  # yes/no per key, or how many keys match


class TemplateSpec(Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9-]{0,99}$")
    version: int = Field(ge=1, le=1_000_000)
    kind: TemplateKindName
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=4000)
    datasets: list[str] = Field(min_length=1, max_length=20)
    parameters: dict[str, dict[str, Any]] = Field(default_factory=dict, max_length=50)
    sql: str | None = Field(default=None, min_length=1, max_length=20_000)
    output: OutputSpec = OutputSpec()
    verify: VerifySpec | None = None
    dp: DpQuerySpec | None = None  # kind dp: the declarative query instead of `sql`
    findings: FindingsSpec | None = None  # kind list: a comparison (gateway/findings/spec.py)

    @model_validator(mode="after")
    def _consistent(self) -> TemplateSpec:
        if len(set(self.datasets)) != len(self.datasets):
            raise ValueError("datasets must be listed once each")
        if self.kind is TemplateKindName.DP:
            if self.dp is None or self.sql is not None or len(self.datasets) != 1:
                raise ValueError("a dp template has a `dp` section, no `sql`, and one dataset")
        elif self.sql is None or self.dp is not None:
            raise ValueError(f"a {self.kind.value} template has `sql` and no `dp` section")
        if (self.verify is not None) != (self.kind is TemplateKindName.VERIFY):
            raise ValueError("a verify section is required for, and only for, kind verify")
        if self.findings is not None and self.kind is not TemplateKindName.LIST:
            raise ValueError("a findings section makes a list template a comparison")
        if self.verify is not None and self.verify.key.name in self.parameters:
            raise ValueError("the verify key must not also be declared as a parameter")
        return self

    def content_hash(self) -> str:
        """Approval binds to this: any change to the document is a new hash."""
        data = self.model_dump(mode="json")
        for optional in (
            "sql",
            "dp",
            "verify",
            "findings",
        ):  # absent when unused: others hash as before
            if data.get(optional) is None:
                data.pop(optional, None)
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def parse_document(text: str | bytes, model: type[Strict]) -> Any:
    """Parse YAML (or JSON, a subset) into `model`; errors name fields, never echo values."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InvalidInput(f"the document is not valid YAML{where}") from None
    return validate_document(data, model)


def validate_document(data: object, model: type[Strict]) -> Any:
    if not isinstance(data, dict):
        raise InvalidInput("the document must be a mapping of fields")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(
            "the document has invalid fields", errors=validation_errors(exc)
        ) from None


def validation_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Field locations and messages only: pydantic's `input` could carry data values."""
    out = []
    for err in exc.errors(include_input=False, include_url=False, include_context=False):
        loc = ".".join(str(p) for p in err["loc"])
        out.append({"field": loc, "message": err["msg"]})
    return out
