"""Instances opened ahead of jobs are still fresh: handed out once, never reused."""

from __future__ import annotations

import threading

from sandbox.engines.duckdb import DuckDBEngine, _FreshInstances

CONFIG: dict[str, str | int] = {"threads": 1, "memory_limit": "256MB"}


def test_an_instance_is_handed_out_once_and_never_again() -> None:
    instances = _FreshInstances(CONFIG, spares=2)
    taken = []
    for _ in range(8):
        con = instances.take()
        assert all(con is not earlier for earlier in taken)
        taken.append(con)  # kept alive, so identity cannot be recycled
        instances.retire(con)
    instances.close()


def test_close_stops_the_background_threads() -> None:
    instances = _FreshInstances(CONFIG, spares=1)
    instances.retire(instances.take())
    names = {t.name for t in threading.enumerate()}
    assert {"sandbox-duckdb-spares", "sandbox-duckdb-closer"} <= names
    instances.close()
    names = {t.name for t in threading.enumerate()}
    assert not names & {"sandbox-duckdb-spares", "sandbox-duckdb-closer"}


def test_engine_without_spares_starts_no_threads() -> None:
    engine = DuckDBEngine()
    engine._instances.retire(engine._instances.take())
    assert engine._instances._threads == []
    engine.close()
