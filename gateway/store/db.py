"""Database engines and migrations.

SQLite (default): WAL, ``synchronous=FULL``, foreign keys on, and every transaction starts with
``BEGIN IMMEDIATE`` so writers queue on the database lock instead of failing on upgrade.
PostgreSQL: psycopg 3; durability settings are checked at start-up by `check_durability`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects import postgresql, sqlite

from gateway.errors import Unavailable

MIGRATIONS = Path(__file__).parent.parent / "migrations"

# The store's types and errors by name, for modules that hold a connection or catch a store
# failure without writing SQL (SQLAlchemy stays in store/, trail/ and the modules owning a table).
Engine = sa.Engine
Connection = sa.Connection
IntegrityError = sa.exc.IntegrityError
# The store is down or refused the transaction: answered 503, never 500.
UNAVAILABLE: tuple[type[Exception], ...] = (sa.exc.OperationalError, sa.exc.InternalError)


def upsert(dialect: str, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    """`INSERT` into `table` in the store's dialect, for `.on_conflict_do_update` or
    `.on_conflict_do_nothing` (both dialects have them; SQLAlchemy's generic insert does not)."""
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


def create_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _sqlite_engine(url: str) -> sa.Engine:
    engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # Writers take the lock up front; `reading()` connections begin deferred so they
        # run beside a writer under WAL.
        deferred = conn.get_execution_options().get("insitu_read_only", False)
        conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")

    return engine


def reading(engine: sa.Engine) -> sa.Connection:
    """A connection for reads only (on SQLite it does not take the write lock)."""
    return engine.connect().execution_options(insitu_read_only=True)


def snapshot(engine: sa.Engine) -> sa.Connection:
    """A connection for reads only whose transaction sees one snapshot of the store:
    SQLite's deferred transaction under WAL (from its first read, beside a writer), a
    REPEATABLE READ transaction on PostgreSQL (READ COMMITTED sees each statement's own)."""
    conn = reading(engine)
    if engine.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
    return conn


def ping(engine: sa.Engine) -> None:
    """One round trip to the store (raises one of `UNAVAILABLE` when it is down)."""
    with reading(engine) as conn:
        conn.execute(sa.text("SELECT 1"))


MIN_FREE_BYTES = 1 << 20  # below this much free space beside a SQLite store, not ready


def check_writable(engine: sa.Engine) -> None:
    """Raise one of `UNAVAILABLE` (or `Unavailable`) unless a write transaction can begin and
    commit now: the write lock on SQLite (and room on its disk), a primary on PostgreSQL."""
    with engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE takes the write lock
        if engine.dialect.name == "postgresql":
            if conn.exec_driver_sql("SELECT pg_is_in_recovery()").scalar():
                raise Unavailable("the PostgreSQL server is a read-only standby")
            conn.exec_driver_sql("SELECT txid_current()")  # assigns a write transaction id
    database = engine.url.database
    on_file = engine.dialect.name == "sqlite" and database and database != ":memory:"
    if on_file and shutil.disk_usage(Path(str(database)).parent).free < MIN_FREE_BYTES:
        raise Unavailable("the disk holding the store is full")


def check_durability(engine: sa.Engine) -> None:
    """Refuse to run on a store that could lose a committed audit entry."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            sync = conn.exec_driver_sql("PRAGMA synchronous").scalar()
            if sync is None or int(sync) < 2:  # 2 = FULL, 3 = EXTRA
                raise Unavailable("SQLite must run with synchronous=FULL")
        elif engine.dialect.name == "postgresql":
            for name in ("fsync", "synchronous_commit"):
                value = conn.exec_driver_sql(f"SHOW {name}").scalar()
                if str(value).lower() not in {"on", "remote_write", "remote_apply", "local"}:
                    raise Unavailable(f"PostgreSQL must run with {name}=on")


# The newest migration's revision: a store already there is not handed to alembic, whose
# revision map (every migration file loaded) costs ~0.1 s a start. A test keeps it equal to
# alembic's head; a new migration changes it.
HEAD = "0014_append"


def at_head(engine: sa.Engine) -> bool:
    """The store's schema is at `HEAD` (False when it has no version table yet)."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return False
        versions = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()
        return list(versions) == [HEAD]


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest migration."""
    if at_head(engine):
        return
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
