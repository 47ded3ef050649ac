"""Audit: the review index (terms), witness cosignatures, an index on entry time (issue 4).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from audit import decode
from audit.terms import terms_of

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_entries_created_at", "audit_entries", ["created_at"])
    op.create_table(
        "audit_terms",
        sa.Column("term", sa.String(200), primary_key=True),
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    )
    op.create_table(
        "audit_cosignatures",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("key_name", sa.String(200), primary_key=True),
        sa.Column("key_hash", sa.String(8), primary_key=True),
        sa.Column("line", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    # Index the entries written before this revision (terms are derived from each body).
    conn = op.get_bind()
    entries = sa.table("audit_entries", sa.column("idx"), sa.column("body"))
    terms = sa.table("audit_terms", sa.column("term"), sa.column("idx"))
    start = 0
    while True:
        rows = conn.execute(
            sa.select(entries.c.idx, entries.c.body)
            .where(entries.c.idx >= start)
            .order_by(entries.c.idx)
            .limit(1000)
        ).all()
        if not rows:
            break
        values = [
            {"term": t, "idx": int(r.idx)} for r in rows for t in terms_of(decode(bytes(r.body)))
        ]
        conn.execute(terms.insert(), values)
        start = int(rows[-1].idx) + 1


def downgrade() -> None:
    op.drop_table("audit_cosignatures")
    op.drop_table("audit_terms")
    op.drop_index("ix_audit_entries_created_at", "audit_entries")
