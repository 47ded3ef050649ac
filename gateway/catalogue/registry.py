"""The catalogue: datasets registered by their provider's data owner.

A dataset's source must live under the home's data directory (a registration cannot point the
sandbox at any other file on the host), and its declared schema must match the file's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from gateway.auth.principal import Principal
from gateway.authz import deny, require
from gateway.catalogue import cache as catalogue_cache
from gateway.catalogue.documents import DatasetSpec
from gateway.context import Gateway
from gateway.errors import Conflict, InvalidInput, NotFound
from gateway.quality import measure as quality
from gateway.quality import store as profiles
from gateway.store import db, schema
from sandbox import Column, Sensitivity, TableSchema, TableSource


def source_path(gw: Gateway, spec: DatasetSpec) -> Path | None:
    """The source file, which must lie in the provider's own directory `<home>/data/<provider>/`:
    a department can only publish files it holds, never another department's. None for a
    table the Spark engine reads elsewhere (catalogue or JDBC)."""
    if spec.source.path is None:
        return None
    raw = Path(spec.source.path)
    path = (raw if raw.is_absolute() else gw.settings.home / raw).resolve()
    if not path.is_relative_to(gw.data_root / spec.provider):
        raise InvalidInput(
            f"source.path must be inside the data directory of department {spec.provider}"
        )
    return path


def resolve_source(gw: Gateway, spec: DatasetSpec) -> Path:
    path = source_path(gw, spec)
    if path is None or not path.is_file():
        raise InvalidInput("source.path does not name an existing file")
    return path


def table_source(gw: Gateway, spec: DatasetSpec) -> TableSource:
    if not spec.source.is_file:
        if gw.settings.engine != "spark":
            raise InvalidInput(
                f"a {spec.source.format} source is read by the Spark engine only "
                "(INSITU_ENGINE=spark)"
            )
        return TableSource(
            dataset_id=spec.id,
            format=spec.source.format,
            table=spec.source.table,
            connection=spec.source.connection,
        )
    return TableSource(dataset_id=spec.id, format=spec.source.format, path=resolve_source(gw, spec))


def _same_source(gw: Gateway, a: DatasetSpec, b: DatasetSpec) -> bool:
    if a.source.is_file and b.source.is_file:
        return source_path(gw, a) == source_path(gw, b)
    return (a.source.format, a.source.connection, a.source.table) == (
        b.source.format,
        b.source.connection,
        b.source.table,
    )


def table_schema(spec: DatasetSpec) -> TableSchema:
    return TableSchema(
        dataset_id=spec.id,
        columns=tuple(
            Column(
                name=c.name,
                type=c.type,
                sensitivity=Sensitivity(c.sensitivity),
                personal=c.personal,
            )
            for c in spec.columns
        ),
    )


def check_declared_schema(gw: Gateway, spec: DatasetSpec) -> None:
    """The schema inferred from the source must hold every declared column with its type."""
    actual = dict(gw.engine.infer_schema(table_source(gw, spec)))
    for column in spec.columns:
        found = actual.get(column.name)
        if found is None:
            raise InvalidInput(f"column {column.name!r} is declared but not in the source")
        if found.upper() != column.type.upper():
            raise InvalidInput(
                f"column {column.name!r} is declared {column.type} but the source has {found}"
            )


def register(gw: Gateway, principal: Principal, spec: DatasetSpec) -> DatasetSpec:
    target = f"dataset:{spec.id}"
    decision = require(gw, principal, "dataset", "register", event="dataset.denied", target=target)
    if principal.department != spec.provider:
        raise deny(
            gw,
            principal,
            event="dataset.denied",
            action="register",
            target=target,
            reason="only the provider department's data owner may register its datasets",
            policy_version=decision.policy_version,
            details={"dataset": spec.id},
        )
    check_declared_schema(gw, spec)
    measured = quality.measure(gw, spec, table_source(gw, spec), previous=None)
    if measured.refused:
        raise refuse_quality(
            gw, principal, measured, event="dataset.refused", action="register", target=target
        )
    with gw.db.begin() as conn:
        catalogue_cache.bump(conn)  # every replica's copy is stale from this commit on
        exists = conn.execute(
            sa.select(schema.datasets.c.id).where(schema.datasets.c.id == spec.id)
        ).first()
        if exists is not None:
            raise Conflict(f"dataset {spec.id} is already registered")
        for other in list_all(conn):
            if _same_source(gw, spec, other):
                raise Conflict(f"that source is already registered as dataset {other.id}")
        conn.execute(
            schema.datasets.insert().values(
                id=spec.id,
                provider=spec.provider,
                share_class=spec.share_class.value,
                classification=spec.classification.value,
                spec=spec.model_dump(mode="json"),
                registered_by=principal.subject,
                registered_at=datetime.now(UTC),
            )
        )
        gw.audit.record(
            conn,
            type="dataset.registered",
            principal=principal,
            action="register",
            target=target,
            allowed=True,
            rule=decision.rule,
            details={
                "dataset": spec.id,
                "provider": spec.provider,
                "share_class": spec.share_class.value,
                "classification": spec.classification.value,
                "policy_version": decision.policy_version,
                **quality_details(measured),
            },
        )
        profiles.insert(conn, measured.row("registration"))
    return spec


def quality_details(measured: quality.Measured) -> dict[str, Any]:
    details = measured.audit_details()
    return {k: details[k] for k in ("profile", "snapshot", "alerts")}


def refuse_quality(
    gw: Gateway,
    principal: Principal,
    measured: quality.Measured,
    *,
    event: str,
    action: str,
    target: str,
) -> InvalidInput:
    """Audit a snapshot refused by a `must` quality rule (with its profile) and return the 422."""
    with gw.db.begin() as conn:
        gw.audit.record(
            conn,
            type=event,
            principal=principal,
            action=action,
            target=target,
            allowed=False,
            reason="a must quality rule fails",
            details=measured.audit_details(),
        )
        profiles.insert(conn, measured.row("registration" if action == "register" else action))
    return quality.refusal(measured, "the registration" if action == "register" else "the snapshot")


def replace_spec(conn: sa.Connection, spec: DatasetSpec) -> None:
    """A registered dataset's document after an accepted snapshot (its new source)."""
    conn.execute(
        schema.datasets.update()
        .where(schema.datasets.c.id == spec.id)
        .values(spec=spec.model_dump(mode="json"))
    )
    catalogue_cache.bump(conn)  # every replica's copy is stale from this commit on


def update(gw: Gateway, principal: Principal, dataset_id: str, spec: DatasetSpec) -> DatasetSpec:
    """Replace a registered dataset's document: its provider's data owner, the same id and
    provider, a source inside the provider's data that matches the declared schema. Jobs
    decide on the new document from now on (share class, disclosure rules, budget caps)."""
    target = f"dataset:{dataset_id}"
    decision = require(gw, principal, "dataset", "register", event="dataset.denied", target=target)
    if spec.id != dataset_id:
        raise InvalidInput("the document's id is not the dataset being updated")
    with db.reading(gw.db) as conn:
        before = get(conn, dataset_id)
    if principal.department != before.provider or spec.provider != before.provider:
        raise deny(
            gw,
            principal,
            event="dataset.denied",
            action="register",
            target=target,
            reason="only the provider department's data owner may update its datasets",
            policy_version=decision.policy_version,
            details={"dataset": dataset_id},
        )
    check_declared_schema(gw, spec)
    with gw.db.begin() as conn:
        source = str(resolve_source(gw, spec))
        for other in list_all(conn):
            if other.id != dataset_id and str(source_path(gw, other)) == source:
                raise Conflict(f"that source file is already registered as dataset {other.id}")
        conn.execute(
            schema.datasets.update()
            .where(schema.datasets.c.id == dataset_id)
            .values(
                share_class=spec.share_class.value,
                classification=spec.classification.value,
                spec=spec.model_dump(mode="json"),
            )
        )
        catalogue_cache.bump(conn)  # every replica's copy is stale from this commit on
        gw.audit.record(
            conn,
            type="dataset.updated",
            principal=principal,
            action="register",
            target=target,
            allowed=True,
            rule=decision.rule,
            details={
                "dataset": dataset_id,
                "provider": spec.provider,
                "share_class": {
                    "before": before.share_class.value,
                    "after": spec.share_class.value,
                },
                "classification": {
                    "before": before.classification.value,
                    "after": spec.classification.value,
                },
                "policy_version": decision.policy_version,
            },
        )
    return spec


def get(conn: sa.Connection, dataset_id: str) -> DatasetSpec:
    row = conn.execute(
        sa.select(schema.datasets.c.spec).where(schema.datasets.c.id == dataset_id)
    ).first()
    if row is None:
        raise NotFound(f"no dataset {dataset_id}")
    return DatasetSpec.model_validate(row.spec)


def providers(conn: sa.Connection, dataset_ids: list[str] | None = None) -> list[str]:
    """The provider departments of the given datasets (None: of every dataset), sorted."""
    d = schema.datasets.c
    query = sa.select(d.provider).distinct()
    if dataset_ids is not None:
        query = query.where(d.id.in_(dataset_ids))
    return sorted(str(p) for p in conn.execute(query).scalars())


def share_attributes(conn: sa.Connection) -> dict[str, tuple[str, str]]:
    """Every dataset's (share class, classification), by id."""
    d = schema.datasets.c
    rows = conn.execute(sa.select(d.id, d.share_class, d.classification)).all()
    return {str(r.id): (str(r.share_class), str(r.classification)) for r in rows}


def list_all(conn: sa.Connection) -> list[DatasetSpec]:
    rows = conn.execute(sa.select(schema.datasets.c.spec).order_by(schema.datasets.c.id))
    return [DatasetSpec.model_validate(r.spec) for r in rows]


def file_sources(gw: Gateway) -> dict[str, TableSource]:
    """Every registered dataset's file as a source, by dataset id (those with an existing
    file in their provider's directory); what the sorted copies may still be copies of."""
    with db.reading(gw.db) as conn:
        specs = list_all(conn)
    found = {}
    for spec in specs:
        if not spec.source.is_file:
            continue
        try:
            found[spec.id] = table_source(gw, spec)
        except InvalidInput:
            continue
    return found


def public_view(spec: DatasetSpec) -> dict[str, Any]:
    """What the catalogue shows: metadata and schema, never the source location."""
    data = spec.model_dump(mode="json")
    data["source"] = {"format": spec.source.format}
    data["catalogue"] = resource_entry(spec)
    return data


_SHARE_CLASS_ZH = {"unconditional": "无条件共享", "conditional": "有条件共享", "none": "不予共享"}
_OPEN_CLASS_ZH = {"open": "无条件开放", "conditional": "有条件开放", "closed": "不予开放"}
_LEVEL_ZH = {"general": "一般", "important": "重要", "core": "核心"}


def resource_entry(spec: DatasetSpec) -> dict[str, Any]:
    """The entry as the government information-resource catalogue (政务信息资源目录) lists it."""
    return {
        "resource_code": spec.resource_code or spec.id,  # 信息资源代码
        "name": spec.title,  # 信息资源名称
        "provider": spec.provider,  # 信息资源提供方
        "summary": spec.description,  # 信息资源摘要
        "format": spec.source.format,  # 信息资源格式
        "share_class": spec.share_class.value,  # 共享属性
        "share_class_label": _SHARE_CLASS_ZH[spec.share_class.value],
        "share_conditions": spec.share_conditions,  # 共享条件
        "open_class": spec.open_class.value,  # 开放属性
        "open_class_label": _OPEN_CLASS_ZH[spec.open_class.value],
        "update_cycle": spec.update_cycle,  # 更新周期
        "classification": spec.classification.value,  # 分级
        "classification_label": _LEVEL_ZH[spec.classification.value],
        "items": [  # 信息项
            {"name": c.name, "type": c.type, "sensitivity": c.sensitivity, "personal": c.personal}
            for c in spec.columns
        ],
    }


def dcat_view(spec: DatasetSpec) -> dict[str, Any]:
    """A DCAT (W3C Data Catalog Vocabulary) flavoured JSON-LD description of the dataset."""
    return {
        "@context": {
            "dcat": "http://www.w3.org/ns/dcat#",
            "dct": "http://purl.org/dc/terms/",
            "csvw": "http://www.w3.org/ns/csvw#",
            "foaf": "http://xmlns.com/foaf/0.1/",
            "insitu": "urn:insitu:vocab:",
        },
        "@id": f"urn:insitu:dataset:{spec.id}",
        "@type": "dcat:Dataset",
        "dct:identifier": spec.resource_code or spec.id,
        "dct:title": spec.title,
        "dct:description": spec.description,
        "dct:publisher": {"@type": "foaf:Agent", "@id": f"urn:insitu:department:{spec.provider}"},
        "dct:accrualPeriodicity": spec.update_cycle,
        "dct:accessRights": spec.share_class.value,
        "dcat:keyword": list(spec.keywords),
        "insitu:shareConditions": spec.share_conditions,
        "insitu:openClass": spec.open_class.value,
        "insitu:classification": spec.classification.value,
        "dcat:distribution": [
            {
                "@type": "dcat:Distribution",
                "dct:format": spec.source.format,
                "dcat:accessService": {
                    "@type": "dcat:DataService",
                    "dct:description": "data stays home: approved query templates only",
                    "dcat:endpointURL": "/v1/jobs",
                },
            }
        ],
        "csvw:tableSchema": {
            "csvw:column": [
                {
                    "csvw:name": c.name,
                    "csvw:datatype": c.type,
                    "insitu:sensitivity": c.sensitivity,
                    "insitu:personal": c.personal,
                }
                for c in spec.columns
            ]
        },
    }
