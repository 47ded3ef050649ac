"""The audit log's append function as migration `0014_append` creates it (its text frozen there)
is the one `audit.metadata.create_all` creates from `audit.store_tables`: a change to either
without the other fails here."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from audit import APPEND_FUNCTION, metadata
from gateway.store import db

pytestmark = pytest.mark.postgres


def definition(engine: sa.Engine) -> list[str]:
    query = sa.text(
        "SELECT pg_get_functiondef(p.oid) FROM pg_proc AS p WHERE p.proname = :name"
    ).bindparams(name=APPEND_FUNCTION)
    with engine.connect() as conn:
        return [str(text) for text in conn.execute(query).scalars()]


def test_the_migrated_append_function_is_the_one_create_all_makes(postgres_url: str) -> None:
    engine = db.create_engine(postgres_url)
    try:
        db.migrate(engine)
        migrated = definition(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP FUNCTION {APPEND_FUNCTION}")
        assert definition(engine) == []
        metadata.create_all(engine)  # the tables exist: only the function is made
        assert len(migrated) == 1 and definition(engine) == migrated
    finally:
        engine.dispose()
