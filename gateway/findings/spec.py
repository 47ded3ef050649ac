"""The `findings:` section that makes a `list` template a comparison (比对).

    kind: list
    datasets: [market.enterprise_registry, tax.filings]
    sql: SELECT r.enterprise_id, r.district FROM market.enterprise_registry AS r
         WHERE NOT EXISTS (...)
    findings:
      type: registered_no_tax_filing   # what each row means
      key: enterprise_id               # a non-personal identifier (unified social credit code)
      district: district               # optional: for the requester's counts
      route_to: tax.filings            # the dataset whose provider corrects it (谁管理谁负责)
      fields: []                       # fields_disagree: the field NAMES compared, never values

Each row of the released list becomes one finding for the provider of `route_to`; the
requesting department gets counts by type, district and state, and the keys only when its
own data holds them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

NAME = r"^[a-z][a-z0-9_]{0,62}$"
FindingType = Literal["registered_no_tax_filing", "filing_no_registration", "fields_disagree"]
LABELS = {
    "registered_no_tax_filing": "registered, no tax filing (登记未申报)",
    "filing_no_registration": "filing with no registration (申报未登记)",
    "fields_disagree": "fields disagree (信息不一致)",
}


class FindingsSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: FindingType
    key: str = Field(pattern=NAME)
    district: str | None = Field(default=None, pattern=NAME)
    route_to: str = Field(min_length=3, max_length=130)
    fields: list[Annotated[str, Field(pattern=NAME)]] = Field(default_factory=list, max_length=50)


def problems(spec: FindingsSpec, datasets: Sequence[str], outputs: Sequence[str]) -> list[str]:
    """Why the comparison cannot be admitted (empty when it can)."""
    found = []
    if spec.route_to not in datasets:
        found.append("findings.route_to must be one of the template's datasets")
    names = [o.lower() for o in outputs]
    if spec.key not in names:
        found.append("findings.key must be an output column")
    if spec.district is not None and spec.district not in names:
        found.append("findings.district must be an output column")
    if spec.type == "fields_disagree" and not spec.fields:
        found.append("a fields_disagree comparison names the fields it compares")
    if spec.district is not None and spec.district in spec.fields:
        # the district travels with each finding: it must not be a value being compared
        found.append("findings.district must not be one of the fields compared")
    if spec.key in spec.fields:
        found.append("findings.key must not be one of the fields compared")
    return found
