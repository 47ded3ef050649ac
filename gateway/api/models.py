"""Response models of the catalogue, template, purpose, budget and audit-key routes, so the
OpenAPI document says what each returns. They name the fields clients rely on and allow the
rest (`extra="allow"`): a field added to a view is passed through, never dropped."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class View(BaseModel):
    model_config = ConfigDict(extra="allow")


class Dataset(View):
    id: str
    title: str
    provider: str
    share_class: str
    classification: str
    columns: list[dict[str, Any]]
    source: dict[str, Any]
    catalogue: dict[str, Any]


class Datasets(View):
    items: list[Dataset]


class Template(View):
    id: str
    version: int
    kind: str
    title: str
    datasets: list[str]
    parameters: dict[str, Any]
    content_hash: str
    status: str
    author: str
    approvals: list[Any]


class Templates(View):
    items: list[Template]


class Purpose(View):
    id: str
    dataset: str
    department: str
    purpose: str
    status: str
    expires_at: str | None


class Purposes(View):
    items: list[Purpose]


class Budget(View):
    department: str
    dataset: str
    period: str
    rho: dict[str, str]
    delta: dict[str, str]
    as_epsilon_delta: dict[str, Any]


class Budgets(View):
    budgets: list[Budget]


class AuditKeys(View):
    origin: str
    current: str
    vkeys: list[str]
    witnesses: list[str]


class Health(View):
    status: str


class Ready(View):
    status: str
    policy_version: int | None
    checks: dict[str, bool] = {}


class AuditEntries(View):
    tree_size: int
    items: list[dict[str, Any]]  # index, leaf_hash, body (base64), event (canonical JSON)


class Checkpoint(View):
    checkpoint: str | None  # a C2SP signed note
    tree_size: int


class InclusionProof(View):
    index: int
    tree_size: int
    leaf_hash: str
    proof: list[str]


class ConsistencyProof(View):
    first: int
    second: int
    proof: list[str]


class CallStats(View):
    items: list[dict[str, Any]]  # day, department, dataset, template, allowed, denied
    total: dict[str, int]


class Alerts(View):
    items: list[dict[str, Any]]  # day, dataset, department, keys, matches, job
