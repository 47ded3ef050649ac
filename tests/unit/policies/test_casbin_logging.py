"""Casbin must not log requests, even after another library reconfigures logging."""

from __future__ import annotations

import logging.config

import pytest

from policies import PolicyEngine, Request, default_rules


def test_denials_are_not_logged_by_casbin_after_dictconfig(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = PolicyEngine.from_rules(default_rules(), version=1)
    # what uvicorn does at start-up: re-enables every existing logger
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    caplog.set_level(logging.DEBUG, logger="")
    request = Request(
        roles=("analyst",),
        department="stats",
        obj="data/none/core/civil.x",
        action="query:aggregate",
    )
    assert not engine.decide(request).allowed
    assert [r for r in caplog.records if r.name.startswith("casbin")] == []
