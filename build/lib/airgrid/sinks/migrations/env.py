"""Alembic environment of the SQL projection; the engine comes from airgrid's settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from airgrid.sinks.sql.schema import metadata

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # `alembic -c ...` from a shell: the URL in the config
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")

with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
