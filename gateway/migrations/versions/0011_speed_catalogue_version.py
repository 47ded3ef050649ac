"""The catalogue's version counter (issue 13): bumped with every change to datasets, templates
and their approvals, read to keep each replica's in-memory copy current.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010_ops"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "catalogue_version",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(table, [{"name": "catalogue", "version": 0}])


def downgrade() -> None:
    op.drop_table("catalogue_version")
