"""Issue 18: data-quality profiles, open results (open datasets, versions, API keys) and
comparison findings routed to the responsible department.

Revision ID: 0010_open
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_open"
down_revision = "0010_privacy"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "dataset_profiles",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("dataset_id", sa.String(130), nullable=False),
        sa.Column("fingerprint", sa.String(71), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("snapshot_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("profile", sa.JSON, nullable=False),
        sa.Column("checks", sa.JSON, nullable=False),
        sa.Column("freshness", sa.JSON, nullable=False),
        sa.Column("drift", sa.JSON, nullable=True),
    )
    op.create_index("ix_dataset_profiles_dataset", "dataset_profiles", ["dataset_id", "created_at"])
    op.create_index(
        "ix_dataset_profiles_fingerprint", "dataset_profiles", ["dataset_id", "fingerprint"]
    )
    op.create_table(
        "open_datasets",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.String(4000), nullable=False),
        sa.Column("licence", sa.String(100), nullable=False),
        sa.Column("update_cycle", sa.String(40), nullable=False),
        sa.Column("open_class", sa.String(16), nullable=False),
        sa.Column("template_id", sa.String(100), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("latest_version", sa.Integer, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "open_versions",
        sa.Column("open_id", sa.String(100), sa.ForeignKey("open_datasets.id"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("template_version", sa.Integer, nullable=False),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("result", sa.JSON, nullable=False),
        sa.Column("result_hash", sa.String(71), nullable=False),
        sa.Column("csv_sha256", sa.String(71), nullable=False),
        sa.Column("audit_index", sa.BigInteger, nullable=False),
        sa.Column("receipt", sa.JSON, nullable=True),
        sa.Column("published_by", sa.String(128), nullable=False),
        sa.Column("published_at", TS, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("per_minute", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
    )
    op.create_table(
        "findings",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("template_id", sa.String(100), nullable=False),
        sa.Column("requester", sa.String(64), nullable=False),
        sa.Column("department", sa.String(64), nullable=False),
        sa.Column("finding_type", sa.String(40), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("district", sa.String(200), nullable=True),
        sa.Column("fields", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("note", sa.String(500), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("closed_at", TS, nullable=True),
    )
    op.create_index("ix_findings_department_state", "findings", ["department", "state"])
    op.create_index("ix_findings_job", "findings", ["job_id"])


def downgrade() -> None:
    op.drop_index("ix_findings_job", table_name="findings")
    op.drop_index("ix_findings_department_state", table_name="findings")
    op.drop_table("findings")
    op.drop_table("api_keys")
    op.drop_table("open_versions")
    op.drop_table("open_datasets")
    op.drop_index("ix_dataset_profiles_fingerprint", table_name="dataset_profiles")
    op.drop_index("ix_dataset_profiles_dataset", table_name="dataset_profiles")
    op.drop_table("dataset_profiles")
