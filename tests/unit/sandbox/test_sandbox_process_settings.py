"""Which engine the gateway builds from its settings (process isolation by default)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.settings import Settings
from gateway.wiring import sandbox_engine_for
from sandbox import DuckDBEngine, Limits
from sandbox.engines.process import ProcessEngine


def test_process_isolation_is_the_default(tmp_path: Path) -> None:
    engine = sandbox_engine_for(Settings(home=tmp_path, sandbox_spares=0), Limits(timeout_s=10))
    try:
        assert isinstance(engine, ProcessEngine)
        assert engine.os_limits.address_space == 2 * 2 * 10**9 + 2 * 2**30  # 2 × 2GB + 2 GiB
        assert engine.os_limits.cpu_s == 10 * 2 + 5.0
        assert engine.os_limits.no_writes
        assert engine.max_workers == Settings(home=tmp_path).sandbox_max_workers
    finally:
        engine.close()


def test_in_process_is_chosen_explicitly(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, sandbox_isolation="inprocess")
    engine = sandbox_engine_for(settings, Limits())
    assert isinstance(engine, DuckDBEngine)
    engine.close()


def test_address_space_setting_is_parsed_and_checked(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, sandbox_spares=0, sandbox_address_space="6GiB")
    engine = sandbox_engine_for(settings, Limits())
    try:
        assert isinstance(engine, ProcessEngine)
        assert engine.os_limits.address_space == 6 * 2**30
    finally:
        engine.close()
    with pytest.raises(ValidationError):
        Settings(home=tmp_path, sandbox_address_space="plenty")
