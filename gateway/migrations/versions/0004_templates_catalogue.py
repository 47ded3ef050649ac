"""Templates and catalogue: kinds, retirement, purposes, verify quotas (issue 5).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "template_retirements",
        sa.Column("template_id", sa.String(100), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("retired_by", sa.String(128), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("retired_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["template_id", "version"], ["templates.id", "templates.version"], ondelete="CASCADE"
        ),
    )
    op.create_table(
        "purposes",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("dataset_id", sa.String(130), sa.ForeignKey("datasets.id"), nullable=False),
        sa.Column("department", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(500), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(128), nullable=False),
        sa.Column("requested_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("decided_by", sa.String(128), nullable=True),
        sa.Column("decided_at", TS, nullable=True),
    )
    op.create_index("ix_purposes_department_dataset", "purposes", ["department", "dataset_id"])
    op.create_table(
        "verify_usage",
        sa.Column("department", sa.String(64), primary_key=True),
        sa.Column("dataset_id", sa.String(130), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("reserved", sa.Integer, nullable=False),
        sa.Column("checked", sa.Integer, nullable=False),
        sa.Column("matches", sa.Integer, nullable=False),
        sa.Column("blocked", sa.Boolean, nullable=False),
    )
    op.create_table(
        "verify_alerts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("dataset_id", sa.String(130), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("department", sa.String(64), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("checked", sa.Integer, nullable=False),
        sa.Column("matches", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_verify_alerts_provider", "verify_alerts", ["provider"])
    op.create_table(
        "verify_requests",
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id"), primary_key=True),
        sa.Column("key_values", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("verify_requests")
    op.drop_index("ix_verify_alerts_provider", table_name="verify_alerts")
    op.drop_table("verify_alerts")
    op.drop_table("verify_usage")
    op.drop_index("ix_purposes_department_dataset", table_name="purposes")
    op.drop_table("purposes")
    op.drop_table("template_retirements")
