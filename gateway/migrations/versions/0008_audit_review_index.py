"""Audit: the review index is built after appends; `audit_index` records how far (issue 4).

Entries written before this revision were indexed as they were appended, so the index starts
out covering all of them. On SQLite, entry times are rewritten in the form queries compare.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from audit.store_review import index_terms

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    index = op.create_table(
        "audit_index",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
    )
    conn = op.get_bind()
    entries = sa.table("audit_entries", sa.column("idx"))
    last = conn.execute(sa.select(sa.func.max(entries.c.idx))).scalar()
    op.bulk_insert(index, [{"name": "terms", "size": 0 if last is None else int(last) + 1}])
    if conn.dialect.name == "sqlite":
        # Earlier appends stored created_at in the driver's text form ('… 06:36:02+00:00', UTC)
        # while queries bind SQLAlchemy's ('… 06:36:02.000000'), so time filters were off at
        # the second; rewrite the old rows in the form every comparison uses.
        op.execute(
            "UPDATE audit_entries SET created_at = CASE WHEN instr(created_at, '.') > 0 "
            "THEN substr(created_at, 1, 26) ELSE substr(created_at, 1, 19) || '.000000' END "
            "WHERE created_at LIKE '%+00:00'"
        )


def downgrade() -> None:
    # Index what is still pending (the older code expects every entry indexed), then drop.
    conn = op.get_bind()
    while True:
        done, pending = index_terms(conn, 4096)
        if not done or not pending:
            break
    op.drop_table("audit_index")
