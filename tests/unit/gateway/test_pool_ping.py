"""The PostgreSQL pool pings a connection only when it has been idle (`db.PING_IDLE_S`): one in
steady use goes out as it is, one idle for longer is checked first and replaced when the
server closed it, without the caller seeing an error."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa

from gateway.store import db

pytestmark = pytest.mark.postgres


@pytest.fixture
def engine(postgres_url: str) -> Iterator[sa.Engine]:
    engine = db.create_engine(postgres_url)
    yield engine
    engine.dispose()


@pytest.fixture
def pings(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    seen: list[int] = []
    original = engine.dialect.do_ping

    def counted(dbapi_conn: object) -> bool:
        seen.append(1)
        return original(dbapi_conn)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return seen


def backend_pid(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def terminate(engine: sa.Engine, pid: int) -> None:
    """The server closes that session (as a restart or an idle timeout would)."""
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_a_connection_in_steady_use_is_not_pinged(engine: sa.Engine, pings: list[int]) -> None:
    first = backend_pid(engine)
    for _ in range(20):
        assert backend_pid(engine) == first  # the same pooled connection, back at once
    assert pings == []


def test_an_idle_connection_closed_by_the_server_is_replaced_unseen(
    engine: sa.Engine, pings: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_IDLE_S", 0.05)
    first = backend_pid(engine)
    terminate(engine, first)
    time.sleep(0.1)
    assert backend_pid(engine) != first  # no error: the ping found it closed
    assert len(pings) == 1


def test_a_connection_closed_while_in_use_fails_once_then_the_pool_recovers(
    engine: sa.Engine, pings: list[int]
) -> None:
    first = backend_pid(engine)
    terminate(engine, first)  # within PING_IDLE_S of its use: not pinged
    with pytest.raises(sa.exc.OperationalError) as failed, engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    assert failed.value.connection_invalidated  # a disconnect: the pool replaces it
    assert backend_pid(engine) != first
    assert pings == []
