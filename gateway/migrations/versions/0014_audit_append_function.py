"""The audit log's one-round-trip append on PostgreSQL (issue 13: statements per job).

``insitu_audit_append`` takes the writers' lock, reads the log's size under it, checks that
the right edge the rows were computed from is the stored tree's, and inserts an append's
entries and nodes only then (`audit.store_tables`, whose ``metadata.create_all`` runs the same
text: a test compares the two functions). The text is frozen here: a later change to the
function is a migration of its own. SQLite has no such function and needs none (a
transaction there already holds the one write lock).

Revision ID: 0014_append
Revises: 0013_coverage
"""

from __future__ import annotations

from alembic import op

revision = "0014_append"
down_revision = "0013_coverage"
branch_labels = None
depends_on = None

FUNCTION = """\
CREATE OR REPLACE FUNCTION insitu_audit_append(
    expected bigint,
    edge_level int4[], edge_idx int8[], edge_hash bytea[],
    e_idx int8[], e_leaf bytea[], e_body bytea[], e_type text[], e_at timestamptz[],
    n_level int4[], n_idx int8[], n_hash bytea[]
) RETURNS bigint LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    size_now bigint;
    edge_found bigint;
BEGIN
    IF e_idx[1] IS DISTINCT FROM expected THEN
        RAISE EXCEPTION USING MESSAGE =
            'audit append: rows computed for size ' || e_idx[1] || ', not ' || expected;
    END IF;
    PERFORM pg_advisory_xact_lock(7597136518183202657);
    SELECT coalesce(max(idx) + 1, 0) INTO size_now FROM audit_entries;
    IF size_now <> expected THEN
        RETURN size_now;
    END IF;
    SELECT count(*) INTO edge_found
        FROM audit_nodes AS n
        JOIN unnest(edge_level, edge_idx, edge_hash) AS k(level, idx, hash)
          ON n.level = k.level AND n.idx = k.idx AND n.hash = k.hash;
    IF edge_found <> coalesce(cardinality(edge_level), 0) THEN
        RETURN -1;
    END IF;
    INSERT INTO audit_entries (idx, leaf_hash, body, event_type, created_at)
        SELECT * FROM unnest(e_idx, e_leaf, e_body, e_type, e_at);
    INSERT INTO audit_nodes (level, idx, hash)
        SELECT * FROM unnest(n_level, n_idx, n_hash);
    RETURN size_now;
END
$fn$"""
SIGNATURE = (
    "insitu_audit_append(bigint, int4[], int8[], bytea[], int8[], bytea[], bytea[], text[], "
    "timestamptz[], int4[], int8[], bytea[])"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {SIGNATURE}")
