"""The SQL projection: alarms, tasks, task events, feedback and dead letters (SQLAlchemy 2 Core).

SQLite file by default, PostgreSQL (psycopg 3) in production; Alembic migrations; idempotent.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

from airgrid.sinks.sql.queries import (
    dlq_counts,
    get_task,
    iter_tasks,
    list_sources,
    list_tasks,
    source_history,
    table_counts,
    task_history,
)
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
    "list_sources",
    "list_tasks",
    "make_engine",
    "metadata",
    "source_history",
    "table_counts",
    "task_events",
    "task_history",
    "tasks",
]


def make_engine(url: str, connect_timeout: float = 5.0, statement_timeout: float | None = None) -> Engine:
    """An engine for the projection. PostgreSQL gets a connect timeout and, with
    ``statement_timeout``, a bound on every statement (lock waits included); SQLite gets WAL and a
    busy timeout (``statement_timeout``, 5 s by default). A statement that hits the bound fails:
    the caller retries, where it would otherwise hang on a stuck database for good."""
    args: dict[str, Any] = {}
    if url.startswith("postgresql"):
        connect: dict[str, Any] = {"connect_timeout": max(1, int(connect_timeout))}
        if statement_timeout is not None:
            connect["options"] = f"-c statement_timeout={max(1, int(statement_timeout * 1000))}"
        args["connect_args"] = connect
    engine = create_engine(url, pool_pre_ping=True, **args)
    if engine.dialect.name == "sqlite":
        busy_ms = 5000 if statement_timeout is None else max(1, int(statement_timeout * 1000))

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
            cur.close()

    return engine
