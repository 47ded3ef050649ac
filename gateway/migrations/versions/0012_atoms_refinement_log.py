"""The atom check's partition as a snapshot, a small head row and an append-only log of
refinements (issue 15).

Existing partitions stay as the snapshot of version 0 with a fresh random tag each, and get
their head row; the log starts empty. Downgrading folds the log into the snapshot, so no
release is forgotten.

Revision ID: 0012_atoms
Revises: 0011
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from sandbox import Partition, cells_from_bytes, refined_partition

revision = "0012_atoms"
down_revision = "0011"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
KEY = ("dataset_id", "unit_column")
partitions = sa.table(
    "release_partitions",
    *(sa.column(c) for c in (*KEY, "scheme", "units", "cells", "base", "base_tag")),
    sa.column("data", sa.LargeBinary),
)
heads = sa.table(
    "release_partition_heads",
    *(sa.column(c) for c in (*KEY, "scheme", "units", "cells", "head", "base", "log_bytes")),
    *(sa.column(c) for c in ("head_tag", "base_tag")),
    sa.column("updated_at", TS),
)
refinements = sa.table(
    "release_refinements",
    *(sa.column(c) for c in (*KEY, "seq")),
    sa.column("cells", sa.LargeBinary),
)


def upgrade() -> None:
    op.create_table(
        "release_partition_heads",
        sa.Column("dataset_id", sa.String(130), primary_key=True),
        sa.Column("unit_column", sa.String(64), primary_key=True),
        sa.Column("scheme", sa.String(64), nullable=False),
        sa.Column("units", sa.BigInteger, nullable=False),
        sa.Column("cells", sa.BigInteger, nullable=False),
        sa.Column("head", sa.BigInteger, nullable=False),
        sa.Column("head_tag", sa.String(16), nullable=False),
        sa.Column("base", sa.BigInteger, nullable=False),
        sa.Column("base_tag", sa.String(16), nullable=False),
        sa.Column("log_bytes", sa.BigInteger, nullable=False),
        sa.Column("key_id", sa.String(16)),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "release_refinements",
        sa.Column("dataset_id", sa.String(130), primary_key=True),
        sa.Column("unit_column", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("tag", sa.String(16), nullable=False),
        sa.Column("cells", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    with op.batch_alter_table("release_partitions") as batch:
        batch.add_column(sa.Column("base", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("base_tag", sa.String(16), nullable=True))
    conn = op.get_bind()
    p = partitions.c
    for row in conn.execute(sa.select(p.dataset_id, p.unit_column, p.scheme, p.units, p.cells)):
        tag = secrets.token_hex(8)
        key = {"dataset_id": row.dataset_id, "unit_column": row.unit_column}
        conn.execute(
            partitions.update()
            .where(p.dataset_id == row.dataset_id, p.unit_column == row.unit_column)
            .values(base=0, base_tag=tag)
        )
        conn.execute(
            heads.insert().values(
                **key,
                scheme=row.scheme,
                units=row.units,
                cells=row.cells,
                head=0,
                head_tag=tag,
                base=0,
                base_tag=tag,
                log_bytes=0,
                updated_at=datetime.now(UTC),
            )
        )
    with op.batch_alter_table("release_partitions") as batch:
        batch.alter_column("base", existing_type=sa.BigInteger(), nullable=False)
        batch.alter_column("base_tag", existing_type=sa.String(16), nullable=False)


def downgrade() -> None:
    conn = op.get_bind()
    p, h, r = partitions.c, heads.c, refinements.c
    for row in conn.execute(sa.select(h.dataset_id, h.unit_column, h.cells, h.head)).all():
        key = (p.dataset_id == row.dataset_id, p.unit_column == row.unit_column)
        snapshot = conn.execute(sa.select(p.base, p.data).where(*key)).one()
        logged = conn.execute(
            sa.select(r.cells)
            .where(r.dataset_id == row.dataset_id, r.unit_column == row.unit_column)
            .where(r.seq > snapshot.base, r.seq <= row.head)
            .order_by(r.seq)
        ).scalars()
        cells = [c for data in logged for c in cells_from_bytes(bytes(data))]
        folded = refined_partition(
            Partition.from_bytes(bytes(snapshot.data)), dict(enumerate(cells))
        )
        conn.execute(
            partitions.update()
            .where(*key)
            .values(data=folded.to_bytes(), units=int(folded.units.size), cells=row.cells)
        )
    op.drop_table("release_refinements")
    op.drop_table("release_partition_heads")
    with op.batch_alter_table("release_partitions") as batch:
        batch.drop_column("base_tag")
        batch.drop_column("base")
