"""Tables of the SQL projection (SQLAlchemy 2 Core); Alembic migrations create them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every dialect.

    SQLite keeps no offset, so values are normalised to UTC before they are stored; a stored
    +08:00 time would otherwise compare wrongly with a UTC one.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: airgrid stores aware times only")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):  # pragma: no cover - driver returned text
            value = datetime.fromisoformat(str(value))
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

alarms = Table(
    "alarms",
    metadata,
    Column("event_id", String(200), primary_key=True),
    Column("alarm_id", String(200), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("station_id", String(64), nullable=False, index=True),
    Column("rule_id", String(64), nullable=False),
    Column("pollutant", String(8)),
    Column("severity", String(16), nullable=False),
    Column("route", String(16), nullable=False),
    Column("value", Float),
    Column("threshold", Float),
    Column("aqi", Integer),
    Column("window_start", UtcDateTime, nullable=False),
    Column("opened_at", UtcDateTime, nullable=False),
    Column("emitted_at", UtcDateTime, nullable=False),
)
tasks = Table(
    "tasks",
    metadata,
    Column("task_id", String(120), primary_key=True),
    Column("station_id", String(64), nullable=False, index=True),
    Column("state", String(24), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("level", Integer, nullable=False),
    Column("grid_id", String(64), nullable=False, index=True),
    Column("grid_l3", String(64), nullable=False, index=True),
    Column("grid_l2", String(64), nullable=False, index=True),
    Column("grid_l1", String(64), nullable=False, index=True),
    Column("key_grid", Integer, nullable=False),
    Column("created_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("deadline_at", UtcDateTime),
    Column("closed_at", UtcDateTime),
    Column("kind", String(16), nullable=False, index=True, server_default="alarm"),
)
task_events = Table(
    "task_events",
    metadata,
    Column("task_id", String(120), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("type", String(32), nullable=False, index=True),
    Column("state", String(24), nullable=False),
    Column("level", Integer, nullable=False),
    Column("grid_id", String(64), nullable=False),
    Column("at", UtcDateTime, nullable=False, index=True),
    Column("worker_id", String(64)),
    Column("feedback_id", String(100)),
    Column("alarm_id", String(200)),
    Column("note", Text),
    Column("payload", JSON, nullable=False),
)
# Every feedback message received (applied or not); task events name the applied ones.
feedback = Table(
    "feedback",
    metadata,
    Column("feedback_id", String(100), primary_key=True),
    Column("task_id", String(120), nullable=False, index=True),
    Column("worker_id", String(64), nullable=False),
    Column("action", String(16), nullable=False),
    Column("at", UtcDateTime, nullable=False, index=True),
    Column("source_found", Integer),
    Column("source_type", String(32)),
    Column("sources_inspected", Integer),
    Column("comment", Text, nullable=False),
    Column("payload", JSON, nullable=False),
)
# Rows of readings.dlq, alarms.dlq, commands.dlq and feedback.rejected; one per original message
# (its origin), so a redelivered rejection or a replay adds nothing. ``day`` is the local day
# (settings.timezone).
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("letter_id", String(300), primary_key=True),
    Column("topic", String(32), nullable=False),
    Column("reason_code", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("day", String(10), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("task_id", String(120)),
    Column("feedback_id", String(100)),
    Column("key", String(300)),
    Column("payload", Text, nullable=False),
    Index("ix_dead_letters_day_topic_reason", "day", "topic", "reason_code"),
)
# The pollution-source register (issue 17): one row per source inspected on a patrol or an alarm
# task (the sources listed in a submitted feedback's findings), and per source its figures,
# recomputed from those rows, so a replay changes nothing. A source is named by its register id,
# else by its type and location (``SourceVisit.register_id``).
source_inspections = Table(
    "source_inspections",
    metadata,
    Column("feedback_id", String(100), primary_key=True),
    Column("source_id", String(120), primary_key=True),
    Column("task_id", String(120), nullable=False),
    Column("task_kind", String(16), nullable=False),
    Column("grid_id", String(64), nullable=False),
    Column("worker_id", String(64)),
    Column("at", UtcDateTime, nullable=False, index=True),
    Column("type", String(32), nullable=False),
    Column("name", String(200), nullable=False),
    Column("lon", Float),
    Column("lat", Float),
    Column("problem_found", Integer, nullable=False),
    Column("handled", Integer, nullable=False),
    Index("ix_source_inspections_source_id", "source_id"),
)
sources = Table(
    "sources",
    metadata,
    Column("source_id", String(120), primary_key=True),
    Column("grid_id", String(64), nullable=False, index=True),
    Column("type", String(32), nullable=False),
    Column("name", String(200), nullable=False),
    Column("lon", Float),
    Column("lat", Float),
    Column("first_inspected", UtcDateTime, nullable=False),
    Column("last_inspected", UtcDateTime, nullable=False),
    Column("inspections", Integer, nullable=False),
    Column("problems", Integer, nullable=False),
    Column("handled", Integer, nullable=False),
    Column("repeat_offences", Integer, nullable=False),
)
