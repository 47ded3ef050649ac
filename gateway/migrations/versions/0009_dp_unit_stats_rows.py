"""Differential privacy: the row count of a measured snapshot, for packed fast plans.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dp_unit_stats") as batch:
        batch.add_column(sa.Column("total_rows", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dp_unit_stats") as batch:
        batch.drop_column("total_rows")
