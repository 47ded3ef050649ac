"""Fixtures for the audit unit tests: engines on both databases, a signer, a log."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from audit import Signer
from audit.store import SqlAuditLog, metadata
from tests.unit.audit._support import ORIGIN, make_engine


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(database_url)
    metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def signer() -> Signer:
    return Signer.generate(ORIGIN)


@pytest.fixture
def log(signer: Signer) -> SqlAuditLog:
    return SqlAuditLog(origin=ORIGIN, signer=signer)
