"""The `open_datasets` and `open_versions` tables: reads shared by publishing and serving."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from gateway.store import schema

D, V = schema.open_datasets.c, schema.open_versions.c

_COLUMNS = (
    D.id,
    D.provider,
    D.title,
    D.description,
    D.licence,
    D.update_cycle,
    D.open_class,
    D.template_id,
    D.status,
    V.version,
    V.template_version,
    V.parameters,
    V.result,
    V.result_hash,
    V.csv_sha256,
    V.receipt,
    V.published_at,
)


def _joined() -> sa.Select[Any]:
    return sa.select(*_COLUMNS).join_from(
        schema.open_datasets, schema.open_versions, V.open_id == D.id
    )


def published(conn: sa.Connection) -> list[sa.Row[Any]]:
    """The latest version of every published open dataset."""
    query = _joined().where(D.status == "published", V.version == D.latest_version)
    return list(conn.execute(query.order_by(D.id)).all())


def published_version(conn: sa.Connection, open_id: str, version: int | None) -> sa.Row[Any] | None:
    """One version of a published open dataset (default: the latest); None when unpublished,
    unknown, or not one of its versions."""
    query = _joined().where(D.id == open_id, D.status == "published")
    query = query.where(V.version == (D.latest_version if version is None else version))
    return conn.execute(query).first()


def stamp(conn: sa.Connection) -> tuple[int, str]:
    """Changes whenever anything is published or unpublished (for caches on other replicas)."""
    row = conn.execute(
        sa.select(sa.func.count(), sa.func.max(D.updated_at)).select_from(schema.open_datasets)
    ).one()
    versions = conn.execute(sa.select(sa.func.count()).select_from(schema.open_versions)).scalar()
    return int(row[0]) + int(versions or 0), str(row[1])


# --- writes and the publisher's reads (used by `publish.py`) ------------------------------------


def get_dataset(conn: sa.Connection, open_id: str) -> sa.Row[Any] | None:
    return conn.execute(sa.select(schema.open_datasets).where(D.id == open_id)).first()


def insert_dataset(conn: sa.Connection, **values: Any) -> None:
    conn.execute(schema.open_datasets.insert().values(**values))


def update_dataset(conn: sa.Connection, open_id: str, **values: Any) -> None:
    conn.execute(schema.open_datasets.update().where(D.id == open_id).values(**values))


def insert_version(conn: sa.Connection, **values: Any) -> None:
    conn.execute(schema.open_versions.insert().values(**values))


def set_receipt(conn: sa.Connection, open_id: str, version: int, receipt: Any) -> None:
    conn.execute(
        schema.open_versions.update()
        .where(V.open_id == open_id, V.version == version)
        .values(receipt=receipt)
    )


def versions(conn: sa.Connection, open_id: str) -> list[dict[str, Any]]:
    """Every version, with the job it came from (the publisher's view, never under /open)."""
    rows = conn.execute(
        sa.select(
            V.version,
            V.job_id,
            V.template_version,
            V.parameters,
            V.result_hash,
            V.published_by,
            V.published_at,
            V.audit_index,
        )
        .where(V.open_id == open_id)
        .order_by(V.version)
    ).all()
    return [{**r._asdict(), "published_at": r.published_at.isoformat()} for r in rows]
