"""Atoms of released populations and verify parameter sets per key (issue 15).

Revision ID: 0010_privacy
Revises: 0010_console
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_privacy"
down_revision = "0010_console"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "release_partitions",
        sa.Column("dataset_id", sa.String(130), primary_key=True),
        sa.Column("unit_column", sa.String(64), primary_key=True),
        sa.Column("scheme", sa.String(64), nullable=False),
        sa.Column("units", sa.BigInteger, nullable=False),
        sa.Column("cells", sa.BigInteger, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )

    op.add_column("verify_alerts", sa.Column("kind", sa.String(32), nullable=True))
    op.create_table(
        "verify_probes",
        sa.Column("department", sa.String(64), primary_key=True),
        sa.Column("dataset_id", sa.String(130), primary_key=True),
        sa.Column("period", sa.String(16), primary_key=True),
        sa.Column("key_fp", sa.String(128), primary_key=True),
        sa.Column("parameters_fp", sa.String(128), primary_key=True),
        sa.Column("created_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("verify_probes")
    with op.batch_alter_table("verify_alerts") as batch:
        batch.drop_column("kind")
    op.drop_table("release_partitions")
