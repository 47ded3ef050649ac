"""Initial schema: policy, catalogue, templates, jobs, results, audit log.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "policy_versions",
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("rules", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("note", sa.String(500), nullable=False),
    )
    op.create_table(
        "datasets",
        sa.Column("id", sa.String(130), primary_key=True),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("share_class", sa.String(16), nullable=False),
        sa.Column("classification", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("registered_by", sa.String(128), nullable=False),
        sa.Column("registered_at", TS, nullable=False),
    )
    op.create_table(
        "templates",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("content_hash", sa.String(71), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("author_department", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "template_approvals",
        sa.Column("template_id", sa.String(100), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("dataset_id", sa.String(130), primary_key=True),
        sa.Column("content_hash", sa.String(71), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("approver", sa.String(128), nullable=False),
        sa.Column("approver_department", sa.String(64), nullable=False),
        sa.Column("comment", sa.String(500), nullable=False),
        sa.Column("decided_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["template_id", "version"],
            ["templates.id", "templates.version"],
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("template_id", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("content_hash", sa.String(71), nullable=False),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("purpose", sa.String(500), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("department", sa.String(64), nullable=False),
        sa.Column("roles", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("worker", sa.String(64), nullable=True),
        sa.Column("error", sa.String(300), nullable=True),
        sa.Column("audit_index", sa.BigInteger, nullable=True),
        sa.ForeignKeyConstraint(["template_id", "version"], ["templates.id", "templates.version"]),
    )
    op.create_index("ix_jobs_status_created", "jobs", ["status", "created_at"])
    op.create_index("ix_jobs_department", "jobs", ["department"])
    op.create_table(
        "job_results",
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id"), primary_key=True),
        sa.Column("result", sa.JSON, nullable=False),
        sa.Column("result_hash", sa.String(71), nullable=False),
        sa.Column("audit_index", sa.BigInteger, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    # The audit log (tables owned by audit.store; see audit/README.md).
    op.create_table(
        "audit_entries",
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_audit_entries_event_type", "audit_entries", ["event_type"])
    op.create_table(
        "audit_nodes",
        sa.Column("level", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "audit_checkpoints",
        "audit_nodes",
        "audit_entries",
        "job_results",
        "jobs",
        "template_approvals",
        "templates",
        "datasets",
        "policy_versions",
    ):
        op.drop_table(table)
