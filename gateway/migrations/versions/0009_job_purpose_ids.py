"""Jobs: the purposes a job names by id (issue 12: 有条件共享 is the owner's approval of this
purpose, not of any purpose of the department).

Jobs accepted before this revision named none (NULL): a queued one on conditional data is
refused by the worker's re-check and fails, as any job the live policy no longer allows.

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
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("purpose_ids", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("purpose_ids")
