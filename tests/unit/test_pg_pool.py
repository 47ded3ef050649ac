"""The test databases reused within a worker (`tests.pg_pool`) look exactly like fresh copies."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa

from tests.pg_pool import PgPool

pytestmark = pytest.mark.postgres


def dsn(admin_url: str, name: str) -> str:
    url = sa.make_url(admin_url).set(drivername="postgresql", database=name)
    return url.render_as_string(hide_password=False)


@pytest.fixture
def template(pg_admin_url: str) -> Iterator[str]:
    """A template with rows, a sequence advanced past them and a foreign key."""
    name = f"insitu_tpl_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn(pg_admin_url, "test"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(dsn(pg_admin_url, name), autocommit=True) as conn:
        conn.execute("CREATE TABLE parent (id BIGSERIAL PRIMARY KEY, label TEXT NOT NULL)")
        conn.execute("CREATE TABLE child (parent BIGINT REFERENCES parent (id), note BYTEA)")
        conn.execute("INSERT INTO parent (label) VALUES ('a'), ('b')")
        conn.execute("INSERT INTO child VALUES (2, '\\x00ff'::bytea)")
    yield name
    with psycopg.connect(dsn(pg_admin_url, "test"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pool(pg_admin_url: str) -> Iterator[PgPool]:
    made = PgPool(pg_admin_url)
    yield made
    made.close()


def state(admin_url: str, name: str) -> tuple[object, ...]:
    with psycopg.connect(dsn(admin_url, name), autocommit=True) as conn:
        parents = conn.execute("SELECT id, label FROM parent ORDER BY id").fetchall()
        children = conn.execute("SELECT parent, note FROM child").fetchall()
        columns = conn.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public'"
        ).fetchone()
        with conn.transaction(force_rollback=True):  # the next id (the row is not kept)
            conn.execute("INSERT INTO parent (label) VALUES ('next')")
            next_id = conn.execute("SELECT max(id) FROM parent").fetchone()
    return parents, children, columns, next_id


def test_a_reused_database_holds_what_a_fresh_copy_holds(
    pool: PgPool, template: str, pg_admin_url: str
) -> None:
    first = pool.acquire(template)
    fresh = state(pg_admin_url, first)
    with psycopg.connect(dsn(pg_admin_url, first), autocommit=True) as conn:
        conn.execute("INSERT INTO parent (label) VALUES ('c'), ('d')")
        conn.execute("DELETE FROM child")
        conn.execute("UPDATE parent SET label = 'changed'")
    pool.release(first)

    again = pool.acquire(template)
    assert again == first  # reused, not created
    assert state(pg_admin_url, again) == fresh


def test_a_database_whose_shape_changed_is_replaced(
    pool: PgPool, template: str, pg_admin_url: str
) -> None:
    first = pool.acquire(template)
    fresh = state(pg_admin_url, first)
    with psycopg.connect(dsn(pg_admin_url, first), autocommit=True) as conn:
        conn.execute("ALTER TABLE parent ADD COLUMN extra INT")
    pool.release(first)

    again = pool.acquire(template)
    assert again != first
    assert state(pg_admin_url, again) == fresh


def test_a_database_left_closed_to_connections_is_replaced(
    pool: PgPool, template: str, pg_admin_url: str
) -> None:
    first = pool.acquire(template)
    with psycopg.connect(dsn(pg_admin_url, "test"), autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{first}" ALLOW_CONNECTIONS false')
    pool.release(first)

    again = pool.acquire(template)
    assert again != first
    state(pg_admin_url, again)  # connects


def test_a_connection_left_open_does_not_survive_the_reset(
    pool: PgPool, template: str, pg_admin_url: str
) -> None:
    first = pool.acquire(template)
    stray = psycopg.connect(dsn(pg_admin_url, first))
    stray.execute("LOCK TABLE parent IN ACCESS EXCLUSIVE MODE")  # and stays in the transaction
    pool.release(first)

    assert pool.acquire(template) == first
    with pytest.raises(psycopg.OperationalError):
        stray.execute("SELECT 1")
    stray.close()


def test_an_emptied_database_is_as_empty_as_a_new_one(pool: PgPool, pg_admin_url: str) -> None:
    first = pool.acquire_empty()
    with psycopg.connect(dsn(pg_admin_url, first), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x INT)")
        conn.execute("CREATE SEQUENCE counter")
    pool.release(first, empty=True)

    again = pool.acquire_empty()
    assert again == first
    with psycopg.connect(dsn(pg_admin_url, again), autocommit=True) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public'"
        ).fetchone()
        conn.execute("CREATE TABLE t (x INT)")  # the public schema is usable as before
    assert left == (0,)


def test_an_emptied_database_with_another_schema_is_replaced(
    pool: PgPool, pg_admin_url: str
) -> None:
    first = pool.acquire_empty()
    with psycopg.connect(dsn(pg_admin_url, first), autocommit=True) as conn:
        conn.execute("CREATE SCHEMA other")
    pool.release(first, empty=True)

    assert pool.acquire_empty() != first


def test_close_drops_every_database_the_pool_made(template: str, pg_admin_url: str) -> None:
    pool = PgPool(pg_admin_url)
    made = [pool.acquire(template), pool.acquire(template), pool.acquire_empty()]
    for name in made[:2]:
        pool.release(name)
    pool.release(made[2], empty=True)
    pool.close()
    with psycopg.connect(dsn(pg_admin_url, "test"), autocommit=True) as admin:
        left = admin.execute(
            "SELECT count(*) FROM pg_database WHERE datname = ANY(%s)", (made,)
        ).fetchone()
    assert left == (0,)
