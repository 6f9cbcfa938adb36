"""Alembic, driven from code: ``upgrade(engine)`` brings any projection database to ``head``."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
BASELINE = "0001"  # the schema the foundation created with create_all, before Alembic


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    cfg.attributes["engine"] = engine
    return cfg


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to ``revision``; a database made by the pre-Alembic create_all is stamped first."""
    cfg = alembic_config(engine)
    names = set(inspect(engine).get_table_names())
    if "alembic_version" not in names and {"alarms", "tasks", "task_events"} <= names:
        log.info("projection database predates migrations: stamping %s", BASELINE)
        command.stamp(cfg, BASELINE)
    command.upgrade(cfg, revision)
