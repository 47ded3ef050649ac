"""Differential privacy: the budget ledger and idempotent releases (issue 6).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "privacy_budgets",
        sa.Column("department", sa.String(64), primary_key=True),
        sa.Column("dataset_id", sa.String(130), primary_key=True),
        sa.Column("period", sa.String(80), primary_key=True),
        sa.Column("rho_cap", sa.BigInteger, nullable=False),
        sa.Column("rho_spent", sa.BigInteger, nullable=False),
        sa.Column("rho_reserved", sa.BigInteger, nullable=False),
        sa.Column("delta_cap", sa.BigInteger, nullable=False),
        sa.Column("delta_spent", sa.BigInteger, nullable=False),
        sa.Column("delta_reserved", sa.BigInteger, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(
            "rho_spent >= 0 AND rho_reserved >= 0 AND delta_spent >= 0 AND delta_reserved >= 0",
            name="ck_privacy_budgets_not_negative",
        ),
    )
    op.create_table(
        "budget_reservations",
        sa.Column("job_id", sa.String(36), primary_key=True),
        sa.Column("department", sa.String(64), nullable=False),
        sa.Column("dataset_id", sa.String(130), nullable=False),
        sa.Column("period", sa.String(80), nullable=False),
        sa.Column("rho", sa.BigInteger, nullable=False),
        sa.Column("delta", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("settled_at", TS, nullable=True),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("department", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("request_hash", sa.String(71), nullable=False),
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("budget_reservations")
    op.drop_table("privacy_budgets")
