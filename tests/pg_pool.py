"""PostgreSQL databases for tests, reused within an xdist worker and reset to a seed's rows.

``CREATE DATABASE … TEMPLATE`` of a migrated store costs 130-400 ms of the server's CPU and
``DROP DATABASE`` more under load; a test that starts a gateway on PostgreSQL needed two or
three of them. Here each xdist worker keeps the databases its tests used and hands them out
again, reset to exactly the rows of a *seed* (the migrated schema, or a home with the demo
datasets registered) in one transaction of a few milliseconds:

- every other connection to the database is terminated first (the last test's gateway is
  gone, but a stray connection must not see the reset or hold a lock);
- the database's *shape* (relations, columns, constraints, functions, triggers, privileges,
  its own settings and ``ALLOW_CONNECTIONS``) must equal the seed's, by a fingerprint; a test
  that changed any of it (or failed half-way through a change) leaves a database that is
  dropped and replaced by a fresh copy instead;
- every table is emptied and refilled with the seed's rows (binary ``COPY``), and sequences
  are set to the seed's values, with ``session_replication_role = replica`` so foreign keys
  do not order the work (the test role is a superuser; where it is not, databases are created
  and dropped per test as before).

So a test sees the same rows, the same ids and the same schema as in a fresh copy.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import psycopg
import sqlalchemy as sa
from psycopg import sql

FINGERPRINT = """
SELECT md5(string_agg(x, E'\\n' ORDER BY x)) FROM (
  SELECT 'rel:' || n.nspname || '.' || c.relname || ':' || c.relkind::text || ':'
         || coalesce(c.relacl::text, '') || ':' || c.relnatts
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
     AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%'
  UNION ALL
  SELECT 'att:' || c.relname || '.' || a.attname || ':' || a.atttypid || ':' || a.attnotnull
         || ':' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
   WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT 'con:' || conname || ':' || pg_get_constraintdef(c.oid)
    FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
   WHERE n.nspname = 'public'
  UNION ALL
  SELECT 'trg:' || tgname || ':' || tgenabled::text FROM pg_trigger WHERE NOT tgisinternal
  UNION ALL
  SELECT 'fn:' || n.nspname || '.' || p.proname
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  UNION ALL
  SELECT 'ns:' || nspname || ':' || coalesce(nspacl::text, '') FROM pg_namespace
   WHERE nspname NOT LIKE 'pg\\_temp\\_%' AND nspname NOT LIKE 'pg\\_toast\\_temp\\_%'
  UNION ALL
  SELECT 'db:' || datallowconn || ':' || datconnlimit || ':' || coalesce(datacl::text, '')
    FROM pg_database WHERE datname = current_database()
  UNION ALL
  SELECT 'cfg:' || coalesce(array_to_string(setconfig, ';'), '') FROM pg_db_role_setting
   WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
) AS shape(x)
"""


@dataclass(frozen=True)
class Seed:
    """What a reset restores: each table's rows (binary COPY) and each sequence's state."""

    fingerprint: str
    tables: tuple[str, ...]
    rows: dict[str, bytes]
    sequences: dict[str, tuple[int, bool]]


@dataclass
class PgPool:
    """One xdist worker's reusable databases (see the module docstring)."""

    admin_url: str
    seeds: dict[str, Seed] = field(default_factory=dict)
    free: list[str] = field(default_factory=list)
    free_empty: list[str] = field(default_factory=list)
    empty_fingerprint: str | None = None
    made: list[str] = field(default_factory=list)
    reusable: bool | None = None

    def url(self, name: str) -> str:
        return sa.make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def acquire(self, template: str) -> str:
        """A database no one else uses, holding exactly what ``template`` holds."""
        while self.free:
            name = self.free.pop()
            if self._reset(name, template):
                return name
            self._drop(name)
        name = f"insitu_t_{uuid.uuid4().hex[:12]}"
        with self._admin() as conn:
            _terminate(conn, template)  # a template must have no connection while copied
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
        self.made.append(name)
        return name

    def acquire_empty(self) -> str:
        """A database no one else uses, as empty as a new one."""
        while self.free_empty:
            name = self.free_empty.pop()
            if self._empty(name):
                return name
            self._drop(name)
        name = f"insitu_t_{uuid.uuid4().hex[:12]}"
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.made.append(name)
        if self.empty_fingerprint is None:
            with psycopg.connect(self._dsn(name), autocommit=True) as conn:
                shape = conn.execute(FINGERPRINT).fetchone()
            self.empty_fingerprint = None if shape is None else str(shape[0])
        return name

    def reset(self, name: str, template: str) -> None:
        """Make ``name`` (acquired) hold what ``template`` holds, or replace it by a copy."""
        if self._reset(name, template):
            return
        with self._admin() as conn:
            _terminate(conn, name)
            _terminate(conn, template)
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )

    def release(self, name: str, *, empty: bool = False) -> None:
        if self.reusable is False:
            self._drop(name)
        else:
            (self.free_empty if empty else self.free).append(name)

    def close(self) -> None:
        for name in list(self.made):  # `_drop` removes each from `made`
            self._drop(name)
        self.made.clear()
        self.free.clear()
        self.free_empty.clear()

    def _empty(self, name: str) -> bool:
        """Empty in place (a new ``public`` schema, as ``CREATE DATABASE`` makes it); False
        when anything else is left (another schema, a setting): the caller replaces it."""
        if self.reusable is False or self.empty_fingerprint is None:
            return False
        with self._admin() as admin:
            _terminate(admin, name)
        try:
            with psycopg.connect(self._dsn(name), autocommit=True) as conn:
                with conn.transaction():
                    conn.execute("DROP SCHEMA public CASCADE")
                    conn.execute("CREATE SCHEMA public AUTHORIZATION pg_database_owner")
                    conn.execute("GRANT USAGE ON SCHEMA public TO PUBLIC")
                shape = conn.execute(FINGERPRINT).fetchone()
        except psycopg.errors.InsufficientPrivilege:
            self.reusable = False
            return False
        except psycopg.Error:  # e.g. connections not allowed, no public schema: a new one
            return False
        return shape is not None and shape[0] == self.empty_fingerprint

    def _reset(self, name: str, template: str) -> bool:
        """Reset in place; False when the database cannot be (its shape changed, or the role
        may not switch off foreign keys): the caller replaces it."""
        if self.reusable is False:
            return False
        seed = self._seed(template)
        with self._admin() as admin:
            _terminate(admin, name)
        try:
            with psycopg.connect(self._dsn(name), autocommit=True) as conn:
                shape = conn.execute(FINGERPRINT).fetchone()
                if shape is None or shape[0] != seed.fingerprint:
                    return False
                with conn.transaction():
                    conn.execute("SET LOCAL session_replication_role = replica")
                    for table in seed.tables:
                        conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
                    for table, data in seed.rows.items():
                        copy = sql.SQL("COPY {} FROM STDIN (FORMAT binary)").format(
                            sql.Identifier(table)
                        )
                        with conn.cursor().copy(copy) as stream:
                            stream.write(data)
                    for sequence, (value, called) in seed.sequences.items():
                        conn.execute(
                            "SELECT setval(%s::regclass, %s, %s)",
                            (sql.Identifier(sequence).as_string(conn), value, called),
                        )
        except psycopg.errors.InsufficientPrivilege:
            self.reusable = False
            return False
        except psycopg.Error:  # e.g. connections not allowed: the caller makes a fresh one
            return False
        self.reusable = True
        return True

    def _seed(self, template: str) -> Seed:
        found = self.seeds.get(template)
        if found is not None:
            return found
        with psycopg.connect(self._dsn(template), autocommit=True) as conn:
            shape = conn.execute(FINGERPRINT).fetchone()
            tables = tuple(
                str(row[0])
                for row in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
                )
            )
            rows: dict[str, bytes] = {}
            for table in tables:
                data = bytearray()
                copy = sql.SQL("COPY {} TO STDOUT (FORMAT binary)").format(sql.Identifier(table))
                with conn.cursor().copy(copy) as stream:
                    for chunk in stream:
                        data += chunk
                count = conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
                ).fetchone()
                if count is not None and count[0]:
                    rows[table] = bytes(data)
            sequences: dict[str, tuple[int, bool]] = {}
            names = conn.execute(
                "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1"
            ).fetchall()
            for (sequence,) in names:
                state = conn.execute(
                    sql.SQL("SELECT last_value, is_called FROM {}").format(sql.Identifier(sequence))
                ).fetchone()
                assert state is not None
                sequences[str(sequence)] = (int(state[0]), bool(state[1]))
        assert shape is not None
        seed = Seed(str(shape[0]), tables, rows, sequences)
        self.seeds[template] = seed
        return seed

    def _dsn(self, name: str) -> str:
        url = sa.make_url(self.admin_url).set(drivername="postgresql", database=name)
        return url.render_as_string(hide_password=False)

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            self._dsn(sa.make_url(self.admin_url).database or ""), autocommit=True
        )

    def _drop(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        if name in self.made:
            self.made.remove(name)


def _terminate(conn: psycopg.Connection[tuple[object, ...]], name: str) -> None:
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid()",
        (name,),
    )
