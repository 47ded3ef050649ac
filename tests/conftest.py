"""Fixtures shared by every tier.

`database_url` runs a test once on SQLite (a file in the test's tmp dir) and once on the
PostgreSQL server of this machine (a fresh database per test, dropped afterwards). With
``CI=true`` a PostgreSQL that cannot be reached fails the test; otherwise it is skipped with
the reason, so a newcomer's ``make test`` still passes.

Under pytest-xdist (``make test`` runs ``-n auto``) every test still gets its own database:
SQLite files live in the test's tmp dir and each PostgreSQL database has a random name, so
workers never share one (a worker reuses its own, reset between tests: `tests.pg_pool`).
Rich sizes its console from ``COLUMNS`` when stdout is not a terminal (always so in an xdist
worker): it is pinned here, before any CLI module creates its console, so tables print the
same serially and in parallel.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.pg_pool import PgPool

PG_ADMIN_URL = os.environ.get(
    "INSITU_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# Wide, whatever terminal (or none, under xdist) runs the suite.
os.environ["COLUMNS"] = "200"
# The tests that are about sorted copies of verify datasets ask for them; the many others that
# run a verify job on the demo's 5 MB residents would each sort it in the background (the
# product's floor is 1 MiB): they keep the floor copies had before, 16 MiB.
os.environ.setdefault("INSITU_VERIFY_SORTED_COPY_MIN_BYTES", str(16 * 2**20))

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _pg_unavailable_reason() -> str | None:
    try:
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any failure to connect means "not available"
        return f"PostgreSQL at {PG_ADMIN_URL} is not reachable ({type(exc).__name__})"
    return None


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    reason = _pg_unavailable_reason()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"{reason}; with CI=true PostgreSQL is required")
        pytest.skip(reason)
    return PG_ADMIN_URL


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty PostgreSQL database for one test (new, or one of this worker's emptied)."""
    pool: PgPool = request.getfixturevalue("_pg_pool")
    name = pool.acquire_empty()
    try:
        yield pool.url(name)
    finally:
        pool.release(name, empty=True)


def create_database(admin_url: str) -> tuple[str, str]:
    """A new empty PostgreSQL database: (its name, its URL)."""
    name = f"insitu_t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return name, sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(name: str, admin_url: str = PG_ADMIN_URL) -> None:
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def _registered_homes() -> Iterator[dict[str, Any]]:
    """Per xdist worker, the homes with the demo datasets registered, by store kind (made and
    used by the integration tier's `world`); PostgreSQL template databases are dropped at
    the end (listed under "drop")."""
    made: dict[str, Any] = {}
    yield made
    for name in made.get("drop", []):
        drop_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'insitu.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Run the test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_url"))


# --- Migrated stores ----------------------------------------------------------------------
# Running every migration costs 0.2-0.4 s a database; a test that only needs the current
# schema (every gateway a test starts) gets a copy of one migrated per xdist worker: a file
# copy on SQLite; on PostgreSQL a database of the worker's pool reset to its rows (or, the
# first time, CREATE DATABASE … TEMPLATE): see `tests.pg_pool`. The migrations themselves
# still run on empty databases in the tests that take `database_url`.


@pytest.fixture(scope="session")
def _sqlite_schema(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gateway.store import db

    path = tmp_path_factory.mktemp("schema") / "insitu.db"
    engine = db.create_engine(f"sqlite:///{path}")
    try:
        db.migrate(engine)
    finally:
        engine.dispose()
    return path


@pytest.fixture(scope="session")
def _postgres_schema(pg_admin_url: str) -> Iterator[str]:
    from gateway.store import db

    name = f"insitu_schema_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine = db.create_engine(
        sa.make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    )
    try:
        db.migrate(engine)
    finally:
        engine.dispose()  # a template database must have no connection when it is copied
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def migrated_sqlite_url(tmp_path: Path, _sqlite_schema: Path) -> str:
    """A SQLite store at the newest migration, for a test that needs no PostgreSQL run."""
    path = tmp_path / "migrated.db"
    shutil.copyfile(_sqlite_schema, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def migrated_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """`database_url` with the schema already at the newest migration (and nothing in it)."""
    if request.param == "sqlite":
        path = tmp_path / "insitu.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_schema"), path)
        yield f"sqlite:///{path}"
        return
    pool: PgPool = request.getfixturevalue("_pg_pool")
    name = pool.acquire(request.getfixturevalue("_postgres_schema"))
    try:
        yield pool.url(name)
    finally:
        pool.release(name)


@pytest.fixture(scope="session")
def _pg_pool(pg_admin_url: str) -> Iterator[PgPool]:
    """This xdist worker's reusable PostgreSQL databases (`tests.pg_pool`)."""
    pool = PgPool(pg_admin_url)
    try:
        yield pool
    finally:
        pool.close()


# --- Spark Connect ------------------------------------------------------------------------
# One server for the whole run, started from the pyspark wheel's own jars on loopback
# (deploy/spark_connect.py) unless INSITU_TEST_SPARK_REMOTE names a running one (`make spark`).
# Modules whose tests use it say `pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(
# "spark")]`: `--dist loadgroup` then runs them all on one worker, which starts the one server
# (2 cores: never two JVMs at once).
SPARK_REMOTE_ENV = "INSITU_TEST_SPARK_REMOTE"


@pytest.fixture(scope="session")
def spark_remote() -> Iterator[str]:
    """`sc://127.0.0.1:<port>` of a real Spark Connect server; skipped with the reason outside
    CI when Java or pyspark is missing, a failure under CI=true."""
    given = os.environ.get(SPARK_REMOTE_ENV)
    if given:
        yield given
        return
    from deploy.spark_connect import SparkConnectServer, Unavailable

    try:
        server = SparkConnectServer().start()
    except Unavailable as exc:
        if IN_CI:
            pytest.fail(f"{exc}; with CI=true the Spark tests must run")
        pytest.skip(str(exc))
    try:
        yield server.remote
    finally:
        server.stop()
