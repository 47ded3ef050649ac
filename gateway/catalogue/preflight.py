"""Pre-flight: run a template version on synthetic data generated from its datasets' schemas.

Approvers see the shape of what a template returns before approving it, and the real data is
never read: every source is a CSV file written from the declared schema (`sandbox.synthetic`)
into a scratch directory of the home, removed afterwards. Parameters take the first value of
their domain (or `values_from` the synthetic column); a verify template answers three keys
that exist in the synthetic data and one that does not.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway.auth.principal import Principal
from gateway.authz import require
from gateway.catalogue import registry as catalogue
from gateway.catalogue import templates
from gateway.catalogue.documents import DatasetSpec
from gateway.context import Gateway
from gateway.store import db
from sandbox import (
    CompiledQuery,
    DuckDBEngine,
    ParameterError,
    ParameterSpec,
    ParamType,
    ResultTable,
    TableSchema,
    TableSource,
    compared_literals,
    synthetic_values,
    validate_parameters,
    write_synthetic_csv,
)

SHOWN_ROWS = 50
ROWS = 200  # synthetic rows per dataset
Seeds = Mapping[str, tuple[str, ...]]


def _example(spec: ParameterSpec, schemas: dict[str, TableSchema], seeds: Seeds) -> object:
    if spec.values_from is not None:
        ds_id, _, column = spec.values_from.rpartition(".")
        values = synthetic_values(schemas[ds_id], column, ROWS, seeds) if ds_id in schemas else ()
        return values[0] if values else None
    if spec.values:
        return spec.values[0]
    bound = spec.min if spec.min is not None else spec.max
    if spec.type is ParamType.INTEGER_RANGE:
        low = bound if isinstance(bound, int) else 2018
        return [low, low + (spec.min_width or 1)]
    if spec.type is ParamType.DATE_RANGE:
        first = date.fromisoformat(bound) if isinstance(bound, str) else date(2020, 1, 1)
        return [first.isoformat(), (first + timedelta(days=spec.min_width or 1)).isoformat()]
    if spec.type is ParamType.INTEGER:
        return bound if isinstance(bound, int) else 2020
    if spec.type is ParamType.NUMBER:
        return Decimal(str(bound)) if bound is not None else Decimal(0)
    if spec.type is ParamType.DATE:
        return bound if isinstance(bound, str) else date(2022, 1, 1).isoformat()
    if spec.type is ParamType.BOOLEAN:
        return True
    return "example"


def _synthetic_domain(
    spec: ParameterSpec, schemas: dict[str, TableSchema], seeds: Seeds
) -> ParameterSpec:
    """A `values_from` domain resolved from the synthetic column, never from the real one."""
    if spec.values_from is None:
        return spec
    ds_id, _, column = spec.values_from.rpartition(".")
    values = synthetic_values(schemas[ds_id], column, ROWS, seeds) if ds_id in schemas else ()
    return spec.resolved(tuple(v for v in values if isinstance(v, str | int)) or ("",))


def _keys(spec: Any, schemas: dict[str, TableSchema]) -> list[object]:
    """Three keys the synthetic data holds and one it does not."""
    columns = [(s, c) for s in schemas.values() for c in s.columns]
    named = [(s, c) for s, c in columns if c.name.lower() == spec.verify.key.name.lower()]
    idents = [(s, c) for s, c in columns if c.sensitivity.value == "identifier"]
    schema, column = (named or idents or columns)[0]
    present = list(synthetic_values(schema, column.name, ROWS))[:3]
    missing: object = -1 if spec.verify.key.type == "integer" else "NO-SUCH-KEY"
    return [*present, missing]


def preflight(gw: Gateway, principal: Principal, template_id: str, version: int) -> dict[str, Any]:
    target = f"template:{template_id}@{version}"
    decision = require(gw, principal, "template", "read", event="template.denied", target=target)
    stored = templates.get(gw, template_id, version)
    spec = stored.spec
    with db.reading(gw.db) as conn:
        datasets: dict[str, DatasetSpec] = templates.datasets_of(conn, spec)
    schemas = {ds_id: catalogue.table_schema(ds) for ds_id, ds in datasets.items()}
    if spec.sql is None:  # dp templates are declarative; their plan is reviewed, not run here
        return {
            "template": spec.id,
            "version": spec.version,
            "content_hash": stored.content_hash,
            "synthetic": True,
            "ran": False,
            "reason": "pre-flight runs SQL templates; a dp template's plan is shown by its spec",
        }
    seeds = compared_literals(spec.sql)
    own = templates.parameter_specs(spec)
    examples = {name: _example(p, schemas, seeds) for name, p in own.items()}
    body: dict[str, Any] = {
        "template": spec.id,
        "version": spec.version,
        "content_hash": stored.content_hash,
        "synthetic": True,
        "rows_per_dataset": ROWS,
        "note": "synthetic data generated from the declared schemas; no real record was read",
        "parameters": {k: str(v) if isinstance(v, Decimal) else v for k, v in examples.items()},
    }
    specs = {
        name: _synthetic_domain(p, schemas, seeds)
        for name, p in templates.parameter_specs(spec).items()
    }
    try:
        values = validate_parameters(specs, examples)
    except ParameterError as exc:
        body.update(ran=False, reason=f"no example value fits: {exc}")
        return body
    scratch = gw.settings.home / "preflight"
    scratch.mkdir(mode=0o700, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        sources = {}
        for ds_id, schema in schemas.items():
            path = Path(tmp) / f"{ds_id}.csv"
            write_synthetic_csv(schema, path, ROWS, seeds)
            sources[ds_id] = TableSource(ds_id, "csv", path.resolve())
        if spec.verify is not None:
            keys = _keys(spec, schemas)
            query = templates.compile_spec(spec, datasets, verify_slots=len(keys))
            values.update(zip(query.key_parameters, keys, strict=True))
            body["keys"] = keys
        else:
            query = templates.compile_spec(spec, datasets)
        table = _run_synthetic(gw, query, sources, values)
    body.update(
        ran=True,
        columns=list(table.columns),
        rows=[list(r) for r in table.rows[:SHOWN_ROWS]],
        total_rows=len(table.rows),
    )
    with gw.db.begin() as conn:
        gw.audit.record(
            conn,
            type="template.preflighted",
            principal=principal,
            action="read",
            target=f"template:{stored.ref}",
            allowed=True,
            rule=decision.rule,
            details={
                "template": spec.id,
                "version": spec.version,
                "content_hash": stored.content_hash,
            },
        )
    return body


def _run_synthetic(
    gw: Gateway,
    query: CompiledQuery,
    sources: dict[str, TableSource],
    values: dict[str, object],
) -> ResultTable:
    """The synthetic files are written in the gateway's home, which a Spark cluster cannot
    read: on Spark the pre-flight runs the same compiled template on the embedded DuckDB."""
    if gw.settings.engine != "spark":
        return gw.engine.run(query, sources, values)
    engine = DuckDBEngine(gw.engine.limits)
    try:
        return engine.run(query, sources, values)
    finally:
        engine.close()
