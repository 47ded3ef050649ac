"""The audit log's tables and the few SQL helpers its store modules share.

    audit_entries      idx (0-based PK), leaf_hash, body (canonical event bytes), event_type,
                       created_at;  indexes on event_type and created_at
    audit_nodes        (level, idx) PK, hash: the perfect subtree of 2**level leaves starting at
                       leaf idx * 2**level; level 0 holds the leaf hashes
    audit_checkpoints  size PK, root, note (signed), created_at
    audit_terms        (term, idx) PK: the review index, terms derived from each entry
                       (`audit.terms`); not part of the hashed data (`audit.store_review`)
    audit_index        name PK, size: how many entries an index covers ("terms")
    audit_cosignatures (size, key_name, key_hash) PK, signature line, created_at: witness
                       cosignatures of a stored checkpoint, merged into its note on export

The gateway's migrations create the same tables by hand (a test compares them); keep them in
step. Only the `audit.store*` modules import SQLAlchemy (a test checks it), so the offline
verifier never loads it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from audit.errors import StoreError

__all__ = [
    "APPEND_FUNCTION",
    "APPEND_FUNCTION_DDL",
    "AUDIT_LOCK_KEY",
    "EDGE_DIFFERS",
    "INDEX_LOCK_KEY",
    "append_if_size",
    "checkpoints_table",
    "cosignatures_table",
    "driver_cursor",
    "entries_table",
    "index_table",
    "insert_appended",
    "insert_many",
    "lock",
    "lock_and_size",
    "log_size",
    "metadata",
    "nodes_table",
    "terms_table",
]

AUDIT_LOCK_KEY: Final = 0x696E_7369_7475_2F61  # b"insitu/a": pg_advisory_xact_lock key
INDEX_LOCK_KEY: Final = 0x696E_7369_7475_2F69  # b"insitu/i": the review indexer's lock

metadata = sa.MetaData()

entries_table = sa.Table(
    "audit_entries",
    metadata,
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_audit_entries_event_type", "event_type"),
    sa.Index("ix_audit_entries_created_at", "created_at"),
)
nodes_table = sa.Table(
    "audit_nodes",
    metadata,
    sa.Column("level", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.LargeBinary(32), nullable=False),
)
checkpoints_table = sa.Table(
    "audit_checkpoints",
    metadata,
    sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("root", sa.LargeBinary(32), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
terms_table = sa.Table(
    "audit_terms",
    metadata,
    sa.Column("term", sa.String(200), primary_key=True),
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
)
cosignatures_table = sa.Table(
    "audit_cosignatures",
    metadata,
    sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("key_name", sa.String(200), primary_key=True),
    sa.Column("key_hash", sa.String(8), primary_key=True),
    sa.Column("line", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
index_table = sa.Table(
    "audit_index",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
)


@contextmanager
def driver_cursor(conn: sa.Connection) -> Iterator[Any]:
    """A cursor of the transaction's own driver connection (PostgreSQL: statements the
    driver prepares, `COPY`), whose errors are raised as SQLAlchemy's (`sa.exc.DBAPIError`'s
    subclasses: an outage is an `OperationalError`, a duplicate an `IntegrityError`), as for
    every statement sent through SQLAlchemy."""
    dbapi_error = conn.dialect.loaded_dbapi.Error
    driver = conn.connection.driver_connection
    try:
        with driver.cursor() as cursor:  # type: ignore[union-attr]
            yield cursor
    except dbapi_error as exc:
        raise sa.exc.DBAPIError.instance(
            None, None, exc, dbapi_error, connection_invalidated=False
        ) from exc


def lock(conn: sa.Connection, key: int) -> None:
    """Serialise writers: a transaction-scoped advisory lock on PostgreSQL; on SQLite the engine
    begins transactions with `BEGIN IMMEDIATE`, which already holds the one write lock."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
    elif dialect != "sqlite":
        raise StoreError(f"the audit log supports SQLite and PostgreSQL, not {dialect}")


def log_size(conn: sa.Connection) -> int:
    """How many entries the log holds (indexes are gapless from 0)."""
    last = conn.execute(sa.select(sa.func.max(entries_table.c.idx))).scalar()
    return 0 if last is None else int(last) + 1


_LOCKED_SIZE: Final = {
    key: f"SELECT pg_advisory_xact_lock({key}); SELECT max(idx) FROM audit_entries"  # noqa: S608
    for key in (AUDIT_LOCK_KEY, INDEX_LOCK_KEY)
}


def lock_and_size(conn: sa.Connection, key: int) -> int:
    """`lock`, then `log_size` read under it: on PostgreSQL in one round trip.

    Two statements in one simple-protocol query (no parameters: `key` is one of this module's
    integer constants). Under READ COMMITTED each statement takes its own snapshot, so the
    size is read after the lock is held, as when they are sent one by one."""
    if conn.dialect.name != "postgresql":
        lock(conn, key)
        return log_size(conn)
    both = _LOCKED_SIZE.get(key)
    if both is None:
        raise StoreError("lock_and_size takes one of the audit log's lock keys")
    with driver_cursor(conn) as cursor:
        cursor.execute(both)
        cursor.nextset()
        row = cursor.fetchone()
    last = None if row is None else row[0]
    return 0 if last is None else int(last) + 1


# At most this many rows (entries and nodes) are written by one INSERT on PostgreSQL; more go
# through binary COPY (see `insert_many`). A job's append is one entry and one to a few nodes.
SMALL_APPEND: Final = 64
_PG_APPEND: Final = (
    "WITH e AS (INSERT INTO audit_entries (idx, leaf_hash, body, event_type, created_at) "
    "SELECT * FROM unnest(%s::int8[], %s::bytea[], %s::bytea[], %s::text[], %s::timestamptz[])) "
    "INSERT INTO audit_nodes (level, idx, hash) "
    "SELECT * FROM unnest(%s::int4[], %s::int8[], %s::bytea[])"
)


# PostgreSQL: an append in one round trip when the writer knows the log's right edge (the
# edge it last committed, usually). The function takes the writers' lock, reads the size under
# it (a VOLATILE function's statements each take a fresh snapshot under READ COMMITTED, so the
# size includes whatever the lock's last holder committed), checks that the edge the rows were
# computed from is the stored tree's (its O(log n) perfect subtrees, looked up by key), and
# only then inserts the entries and nodes. It returns the size it read, or `EDGE_DIFFERS` when
# the size matched but the edge did not (an edge announced by a transaction whose COMMIT then
# failed, say, while another writer appended as many entries): the rows are in only if it
# returns `expected`. A writer whose bet was wrong holds the lock by then and appends as
# without the function. The migrations and `metadata.create_all` create it
# (`APPEND_FUNCTION_DDL`; its text holds this module's constants only).
APPEND_FUNCTION: Final = "insitu_audit_append"
EDGE_DIFFERS: Final = -1
APPEND_FUNCTION_DDL: Final = f"""\
CREATE OR REPLACE FUNCTION {APPEND_FUNCTION}(
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
    PERFORM pg_advisory_xact_lock({AUDIT_LOCK_KEY});
    SELECT coalesce(max(idx) + 1, 0) INTO size_now FROM audit_entries;
    IF size_now <> expected THEN
        RETURN size_now;
    END IF;
    SELECT count(*) INTO edge_found
        FROM audit_nodes AS n
        JOIN unnest(edge_level, edge_idx, edge_hash) AS k(level, idx, hash)
          ON n.level = k.level AND n.idx = k.idx AND n.hash = k.hash;
    IF edge_found <> coalesce(cardinality(edge_level), 0) THEN
        RETURN {EDGE_DIFFERS};
    END IF;
    INSERT INTO audit_entries (idx, leaf_hash, body, event_type, created_at)
        SELECT * FROM unnest(e_idx, e_leaf, e_body, e_type, e_at);
    INSERT INTO audit_nodes (level, idx, hash)
        SELECT * FROM unnest(n_level, n_idx, n_hash);
    RETURN size_now;
END
$fn$"""  # noqa: S608
_CREATE_APPEND_FUNCTION = sa.DDL(APPEND_FUNCTION_DDL)  # type: ignore[no-untyped-call]
sa.event.listen(metadata, "after_create", _CREATE_APPEND_FUNCTION.execute_if(dialect="postgresql"))
_PG_APPEND_IF_SIZE: Final = (
    f"SELECT {APPEND_FUNCTION}(%s, %s::int4[], %s::int8[], %s::bytea[], "
    "%s::int8[], %s::bytea[], %s::bytea[], %s::text[], %s::timestamptz[], "
    "%s::int4[], %s::int8[], %s::bytea[])"
)


def append_if_size(
    conn: sa.Connection,
    expected: int,
    edge: list[tuple[int, int, bytes]],
    entry_rows: list[tuple[Any, ...]],
    node_rows: list[tuple[Any, ...]],
) -> int:
    """PostgreSQL: take the writers' lock and insert the rows, computed for a log of
    `expected` entries whose right edge is `edge` ((level, index, hash) of each perfect
    subtree), if the log still has that size and that edge, in one round trip. Returns the
    size read under the lock, or `EDGE_DIFFERS`; the rows are in iff it is `expected`. The
    lock is held either way."""
    edges = [list(column) for column in zip(*edge, strict=True)] or [[]] * 3
    entries = [list(column) for column in zip(*entry_rows, strict=True)]
    nodes = [list(column) for column in zip(*node_rows, strict=True)] or [[]] * 3
    with driver_cursor(conn) as cursor:
        cursor.execute(_PG_APPEND_IF_SIZE, (expected, *edges, *entries, *nodes), prepare=True)
        row = cursor.fetchone()
    if row is None or row[0] is None:
        raise StoreError("the audit log's append function returned nothing")
    return int(row[0])


def insert_appended(
    conn: sa.Connection, entry_rows: list[tuple[Any, ...]], node_rows: list[tuple[Any, ...]]
) -> None:
    """Insert an append's entries and nodes (tuples in column order): on PostgreSQL a small
    append in one statement (one round trip instead of two COPYs), a large one by COPY."""
    if conn.dialect.name != "postgresql" or len(entry_rows) + len(node_rows) > SMALL_APPEND:
        insert_many(conn, entries_table, entry_rows)
        insert_many(conn, nodes_table, node_rows)
        return
    entries = [list(column) for column in zip(*entry_rows, strict=True)] or [[]] * 5
    nodes = [list(column) for column in zip(*node_rows, strict=True)] or [[]] * 3
    with driver_cursor(conn) as cursor:
        cursor.execute(_PG_APPEND, (*entries, *nodes), prepare=True)


def _copy_type(column: sa.Column[Any]) -> str:
    """The PostgreSQL type whose binary COPY format the column takes."""
    kind = column.type
    if isinstance(kind, sa.BigInteger):
        return "int8"
    if isinstance(kind, sa.Integer):
        return "int4"
    if isinstance(kind, sa.LargeBinary):
        return "bytea"
    if isinstance(kind, sa.DateTime):
        return "timestamptz" if kind.timezone else "timestamp"
    if isinstance(kind, sa.String):
        return "text"  # varchar and text share one binary format; the column's limit applies
    raise TypeError(f"no COPY type for column {column.name}")


def insert_many(conn: sa.Connection, table: sa.Table, rows: list[tuple[Any, ...]]) -> None:
    """Insert rows (tuples in column order, values ready for the driver) in one go.

    SQLite: the driver's executemany (in-process, cheap per row). PostgreSQL: binary `COPY …
    FROM STDIN` on the transaction's own connection, which costs the driver and the server less
    than any INSERT form at a batch's thousands of rows (executemany sends one INSERT per row;
    `INSERT … SELECT unnest(…)` spends most of its time formatting and parsing text arrays).
    SQLAlchemy's per-row parameter handling costs more than either.
    """
    if not rows:
        return
    columns = list(table.columns)
    # Names and types come from our own Table objects, never from input; every value is bound.
    names = ", ".join(c.name for c in columns)
    if conn.dialect.name == "postgresql":
        statement = f"COPY {table.name} ({names}) FROM STDIN (FORMAT BINARY)"
        with driver_cursor(conn) as cursor, cursor.copy(statement) as copy:
            copy.set_types([_copy_type(c) for c in columns])
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" for _ in columns)
    insert = f"INSERT INTO {table.name} ({names}) VALUES ({marks})"  # noqa: S608 - names only
    conn.exec_driver_sql(insert, rows)


def insert_checkpoint(
    conn: sa.Connection, size: int, root: bytes, note: str, created_at: Any
) -> bool:
    """Store the checkpoint of `size` unless one is stored already; True if this one was."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    inserted = conn.execute(
        dialect.insert(checkpoints_table)
        .values(size=size, root=root, note=note, created_at=created_at)
        .on_conflict_do_nothing(index_elements=[checkpoints_table.c.size])
        .returning(checkpoints_table.c.size)  # psycopg's rowcount does not tell
    )
    return inserted.first() is not None
