"""Disclosure control: released cells and their populations (issue 5).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "release_cells",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("dataset_id", sa.String(130), nullable=False),
        sa.Column("unit_column", sa.String(64), nullable=False),
        sa.Column("cells_per_hash", sa.Integer, nullable=False),
        sa.Column("scheme", sa.String(64), nullable=False),
        sa.Column("units", sa.BigInteger, nullable=False),
        sa.Column("sketch", sa.LargeBinary, nullable=False),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("department", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index(
        "ix_release_cells_population", "release_cells", ["dataset_id", "unit_column", "units"]
    )


def downgrade() -> None:
    op.drop_index("ix_release_cells_population", table_name="release_cells")
    op.drop_table("release_cells")
