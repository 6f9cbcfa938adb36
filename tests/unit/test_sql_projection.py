"""The SQL projection on a SQLite file: contract, idempotent replay, migrations from the
pre-Alembic schema, aware times."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import create_engine, inspect

from airgrid.sinks.sql import SqlProjection, get_task, make_engine
from airgrid.sinks.sql.migrate import current_revision, head_revision
from tests.sql_support import check_projection, week_story


def test_projection_contract_and_replay_on_sqlite(tmp_path: Path) -> None:
    check_projection(f"sqlite:///{tmp_path / 'p.db'}")


def test_migrations_reach_head_and_stamp_a_pre_alembic_database(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.db"
    # the foundation's create_all schema: three tables, no alembic_version, one row of data
    from tests.sql_support import _legacy_schema

    with sqlite3.connect(legacy) as db:
        db.executescript(_legacy_schema())
    engine = make_engine(f"sqlite:///{legacy}")
    SqlProjection(engine).setup()
    assert current_revision(engine) == head_revision(engine) == "0003"
    names = set(inspect(engine).get_table_names())
    assert {"alarms", "tasks", "task_events", "feedback", "dead_letters", "alembic_version"} <= names
    with sqlite3.connect(legacy) as db:
        assert db.execute("select task_id from tasks").fetchall() == [("T-ST001-202601010000",)]


def test_times_are_stored_in_utc_whatever_the_offset(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    sink = SqlProjection(engine)
    sink.setup()
    story = week_story()
    beijing = timezone(timedelta(hours=8))
    first = story.events[0].model_copy(update={"at": story.events[0].at.astimezone(beijing)})
    sink.write([], [first])
    row = get_task(engine, first.task_id)
    assert row is not None and row["created_at"] == first.at and row["created_at"].tzinfo == UTC
    with create_engine(f"sqlite:///{tmp_path / 'p.db'}").connect() as conn:
        raw = conn.exec_driver_sql("select created_at from tasks").scalar()
    assert str(raw).startswith(first.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")), raw
    assert first.at.astimezone(UTC) == datetime(2026, 11, 16, 2, 0, tzinfo=UTC)


def test_an_older_event_never_rolls_a_task_back(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    sink = SqlProjection(engine)
    sink.setup()
    events = [e for e in week_story().events if e.task_id == "T-ST001-202611160200"]
    sink.write([], events[-1:])  # newest first (a replay from an offset), then the rest
    sink.write([], events[:-1])
    row = get_task(engine, events[0].task_id)
    assert row is not None
    assert (row["state"], row["version"]) == ("closed", len(events))
    assert row["created_at"] == events[0].at  # filled in once version 1 arrived
