"""Alembic environment: runs on the connection `gateway.store.db.migrate` hands in."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only `gateway.store.db.migrate` runs migrations
    raise RuntimeError("run migrations through gateway.store.db.migrate")

context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
