"""Fair claiming (issue 13): when each department last had a job claimed, so the queue takes
departments in turn.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "department_turns",
        sa.Column("department", sa.String(64), primary_key=True),
        sa.Column("last_claimed_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("department_turns")
