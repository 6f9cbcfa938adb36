"""The SQL projection: alarms, tasks, task events, feedback and dead letters (SQLAlchemy 2 Core).

SQLite file by default, PostgreSQL (psycopg 3) in production; Alembic migrations; idempotent.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

from airgrid.sinks.sql.queries import dlq_counts, get_task, iter_tasks, list_tasks, table_counts, task_history
from airgrid.sinks.sql.schema import alarms, dead_letters, feedback, metadata, task_events, tasks
from airgrid.sinks.sql.writer import Batch, Letter, SqlProjection

__all__ = [
    "Batch",
    "Letter",
    "SqlProjection",
    "alarms",
    "dead_letters",
    "dlq_counts",
    "feedback",
    "get_task",
    "iter_tasks",
    "list_tasks",
    "make_engine",
    "metadata",
    "table_counts",
    "task_events",
    "task_history",
    "tasks",
]


def make_engine(url: str, connect_timeout: float = 5.0) -> Engine:
    """An engine for the projection; SQLite gets WAL and a busy timeout, PostgreSQL a connect timeout."""
    args: dict[str, Any] = {}
    if url.startswith("postgresql"):
        args["connect_args"] = {"connect_timeout": max(1, int(connect_timeout))}
    engine = create_engine(url, pool_pre_ping=True, **args)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

    return engine
