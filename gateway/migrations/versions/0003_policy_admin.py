"""Policy administration: proposals, four-eyes approvals (issue 3).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("policy_versions") as batch:
        batch.add_column(sa.Column("base_version", sa.Integer, nullable=True))
        batch.add_column(sa.Column("proposal_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("approved_by", sa.String(128), nullable=True))
    op.create_table(
        "policy_proposals",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("base_version", sa.Integer, nullable=False),
        sa.Column("rollback_to", sa.Integer, nullable=True),
        sa.Column("rules", sa.Text, nullable=False),
        sa.Column("added", sa.Integer, nullable=False),
        sa.Column("removed", sa.Integer, nullable=False),
        sa.Column("impact", sa.JSON, nullable=False),
        sa.Column("note", sa.String(500), nullable=False),
        sa.Column("proposed_by", sa.String(128), nullable=False),
        sa.Column("proposed_by_department", sa.String(64), nullable=False),
        sa.Column("proposed_at", TS, nullable=False),
        sa.Column("decided_by", sa.String(128), nullable=True),
        sa.Column("decided_at", TS, nullable=True),
        sa.Column("comment", sa.String(500), nullable=False),
        sa.Column("result_version", sa.Integer, nullable=True),
    )
    op.create_index("ix_policy_proposals_status", "policy_proposals", ["status", "proposed_at"])


def downgrade() -> None:
    op.drop_index("ix_policy_proposals_status", table_name="policy_proposals")
    op.drop_table("policy_proposals")
    with op.batch_alter_table("policy_versions") as batch:
        batch.drop_column("approved_by")
        batch.drop_column("proposal_id")
        batch.drop_column("base_version")
