"""Which released cells the atom check's partition covers (issue 13: the pairwise check's cost).

``release_partition_heads.covers_after``: every cell of ``release_cells`` with a larger id was
released through a release that also refined the partition (same dataset and unit column),
so the atom check already covers it and the pairwise comparison skips it. Cells up to it
were recorded before the partition started; they are still compared pairwise. An existing
head gets the largest cell id of its dataset now: from here on every release does both.

Revision ID: 0013_coverage
Revises: 0012_atoms
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_coverage"
down_revision = "0012_atoms"
branch_labels = None
depends_on = None

heads = sa.table(
    "release_partition_heads",
    sa.column("dataset_id"),
    sa.column("unit_column"),
    sa.column("covers_after", sa.BigInteger),
)
cells = sa.table(
    "release_cells",
    sa.column("id", sa.BigInteger),
    sa.column("dataset_id"),
    sa.column("unit_column"),
)


def upgrade() -> None:
    with op.batch_alter_table("release_partition_heads") as batch:
        batch.add_column(sa.Column("covers_after", sa.BigInteger, nullable=True))
    newest = (
        sa.select(sa.func.coalesce(sa.func.max(cells.c.id), 0))
        .where(
            cells.c.dataset_id == heads.c.dataset_id,
            cells.c.unit_column == heads.c.unit_column,
        )
        .scalar_subquery()
    )
    op.get_bind().execute(heads.update().values(covers_after=newest))


def downgrade() -> None:
    with op.batch_alter_table("release_partition_heads") as batch:
        batch.drop_column("covers_after")
