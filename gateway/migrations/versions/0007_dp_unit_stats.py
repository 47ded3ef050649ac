"""Differential privacy: snapshot-verified contribution statistics (issue 6).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "dp_unit_stats",
        sa.Column("snapshot", sa.String(71), primary_key=True),
        sa.Column("dataset_id", sa.String(130), nullable=False),
        sa.Column("unit_column", sa.String(64), nullable=False),
        sa.Column("max_rows", sa.BigInteger, nullable=False),
        sa.Column("null_rows", sa.BigInteger, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_dp_unit_stats_dataset", "dp_unit_stats", ["dataset_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_dp_unit_stats_dataset", table_name="dp_unit_stats")
    op.drop_table("dp_unit_stats")
