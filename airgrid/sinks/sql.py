"""The SQL projection (SQLAlchemy 2 Core): alarms, tasks and task events; idempotent writes."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.engine import Engine

from airgrid.models.alarms import AlarmEvent
from airgrid.models.tasks import TaskEvent

log = logging.getLogger(__name__)
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
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("emitted_at", DateTime(timezone=True), nullable=False),
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
    Column("created_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("deadline_at", DateTime(timezone=True)),
    Column("closed_at", DateTime(timezone=True)),
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
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("worker_id", String(64)),
    Column("feedback_id", String(100)),
    Column("alarm_id", String(200)),
    Column("note", Text),
    Column("payload", JSON, nullable=False),
)


def make_engine(url: str) -> Engine:
    engine = create_engine(url, future=True, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

    return engine


class SqlProjection:
    """Batched, idempotent writer: replaying any events changes no row."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def setup(self) -> None:
        metadata.create_all(self.engine)

    def write(self, alarm_events: Sequence[AlarmEvent], task_evts: Sequence[TaskEvent]) -> int:
        """One transaction; returns the number of new event rows."""
        written = 0
        with self.engine.begin() as conn:
            if alarm_events:
                ids = [a.event_id for a in alarm_events]
                have = set(conn.scalars(select(alarms.c.event_id).where(alarms.c.event_id.in_(ids))))
                rows = [_alarm_row(a) for a in alarm_events if a.event_id not in have]
                rows = list({r["event_id"]: r for r in rows}.values())
                if rows:
                    conn.execute(alarms.insert(), rows)
                    written += len(rows)
            if task_evts:
                keys = {(e.task_id, e.version) for e in task_evts}
                task_ids = sorted({e.task_id for e in task_evts})
                have_ev = {
                    (r.task_id, r.version)
                    for r in conn.execute(
                        select(task_events.c.task_id, task_events.c.version).where(
                            task_events.c.task_id.in_(task_ids)
                        )
                    )
                }
                new = {k: e for e in task_evts if (k := (e.task_id, e.version)) in keys - have_ev}
                if new:
                    conn.execute(task_events.insert(), [_event_row(e) for e in new.values()])
                    written += len(new)
                latest: dict[str, TaskEvent] = {}
                for e in task_evts:
                    if e.task_id not in latest or e.version > latest[e.task_id].version:
                        latest[e.task_id] = e
                current = {
                    r.task_id: r.version
                    for r in conn.execute(
                        select(tasks.c.task_id, tasks.c.version).where(tasks.c.task_id.in_(task_ids))
                    )
                }
                for tid, e in latest.items():
                    row = _task_row(e)
                    if tid not in current:
                        row["created_at"] = conn.scalar(
                            select(func.min(task_events.c.at)).where(task_events.c.task_id == tid)
                        )
                        conn.execute(tasks.insert(), [row])
                    elif current[tid] < e.version:
                        conn.execute(tasks.update().where(tasks.c.task_id == tid), [row])
        return written


def _alarm_row(a: AlarmEvent) -> dict[str, Any]:
    return {
        "event_id": a.event_id,
        "alarm_id": a.alarm_id,
        "kind": a.kind,
        "station_id": a.station_id,
        "rule_id": a.rule_id,
        "pollutant": a.pollutant,
        "severity": a.severity,
        "route": a.route,
        "value": a.value,
        "threshold": a.threshold,
        "aqi": a.aqi,
        "window_start": a.window_start,
        "opened_at": a.opened_at,
        "emitted_at": a.emitted_at,
    }


def _event_row(e: TaskEvent) -> dict[str, Any]:
    return {
        "task_id": e.task_id,
        "version": e.version,
        "type": e.type,
        "state": e.state,
        "level": e.level,
        "grid_id": e.grid_id,
        "at": e.at,
        "worker_id": e.worker_id,
        "feedback_id": e.feedback_id,
        "alarm_id": e.alarm_id,
        "note": e.note,
        "payload": e.model_dump(mode="json"),
    }


def _task_row(e: TaskEvent) -> dict[str, Any]:
    closed: datetime | None = e.at if e.state == "closed" else None
    return {
        "task_id": e.task_id,
        "station_id": e.station_id,
        "state": e.state,
        "version": e.version,
        "severity": e.severity,
        "level": e.level,
        "grid_id": e.grid_id,
        "grid_l3": e.lineage.l3,
        "grid_l2": e.lineage.l2,
        "grid_l1": e.lineage.l1,
        "key_grid": int(e.lineage.key_grid),
        "updated_at": e.at,
        "deadline_at": e.deadline_at,
        "closed_at": closed,
    }


def task_history(engine: Engine, task_id: str) -> list[dict[str, Any]]:
    """The task's events in version order (for the CLI and tests)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(task_events).where(task_events.c.task_id == task_id).order_by(task_events.c.version)
        )
        return [dict(r._mapping) for r in rows]


def iter_tasks(engine: Engine, state: str | None = None) -> Iterable[dict[str, Any]]:
    with engine.connect() as conn:
        q = select(tasks).order_by(tasks.c.updated_at)
        if state:
            q = q.where(tasks.c.state == state)
        return [dict(r._mapping) for r in conn.execute(q)]
