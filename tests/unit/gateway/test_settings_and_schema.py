"""Settings drive the README's table; migrations create exactly the declared tables."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from audit.store import metadata as audit_metadata
from gateway.settings import Settings, settings_table
from gateway.store import db, schema

ROOT = Path(__file__).resolve().parents[3]


def test_readme_settings_table_matches_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    assert settings_table() in readme, "regenerate the README table: python -m gateway.settings"


def test_every_setting_has_a_description() -> None:
    assert all(f.description for f in Settings.model_fields.values())


def test_postgresql_url_gets_the_psycopg_driver() -> None:
    s = Settings(database_url="postgresql://u@h/db")
    assert s.resolved_database_url == "postgresql+psycopg://u@h/db"


def test_the_head_constant_is_alembics_head() -> None:
    """`db.migrate` skips alembic for a store at `db.HEAD`: it must name the newest migration."""
    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_heads() == [db.HEAD]


def test_migrations_create_exactly_the_declared_tables(database_url: str) -> None:
    engine = db.create_engine(database_url)
    db.migrate(engine)
    combined = sa.MetaData()
    for table in [*schema.metadata.tables.values(), *audit_metadata.tables.values()]:
        table.to_metadata(combined)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), combined)
    engine.dispose()
    assert diff == []
