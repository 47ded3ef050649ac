"""The audit log's one-round-trip append on PostgreSQL (issue 13: statements per job).

``insitu_audit_append`` takes the writers' lock, reads the log's size under it and inserts an
append's entries and nodes only if the log has the size they were computed for
(`audit.store_tables.APPEND_FUNCTION_DDL`, the same text `metadata.create_all` runs). SQLite
has no such function and needs none (a transaction there already holds the one write lock).

Revision ID: 0014_append
Revises: 0013_coverage
"""

from __future__ import annotations

from alembic import op

from audit import APPEND_FUNCTION, APPEND_FUNCTION_DDL

revision = "0014_append"
down_revision = "0013_coverage"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(APPEND_FUNCTION_DDL)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"DROP FUNCTION IF EXISTS {APPEND_FUNCTION}"
            "(bigint, int8[], bytea[], bytea[], text[], timestamptz[], int4[], int8[], bytea[])"
        )
