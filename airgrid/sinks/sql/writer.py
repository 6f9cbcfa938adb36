"""The projection writer: one transaction per batch, idempotent (replaying changes no row)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Table, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from airgrid.models.alarms import AlarmEvent
from airgrid.models.dlq import DeadLetter
from airgrid.models.feedback import Feedback, FeedbackRejected
from airgrid.models.tasks import TaskEvent
from airgrid.sinks.sql.schema import (
    alarms,
    dead_letters,
    feedback,
    source_inspections,
    sources,
    task_events,
    tasks,
)

log = logging.getLogger(__name__)
LetterTopic = Literal["readings.dlq", "feedback.rejected", "alarms.dlq", "commands.dlq"]
PAYLOAD_CHARS = 2000
CHUNK = 1000


@dataclass(frozen=True)
class Letter:
    """A message of a DLQ/rejected topic; ``fallback_id`` (its own topic:partition:offset)
    identifies it when it names no origin."""

    topic: LetterTopic
    message: DeadLetter | FeedbackRejected
    fallback_id: str

    @property
    def letter_id(self) -> str:
        o = self.message.origin
        return f"{o.topic}:{o.partition}:{o.offset}" if o is not None else self.fallback_id


@dataclass
class Batch:
    """What one projection write holds, by table."""

    alarms: list[AlarmEvent] = field(default_factory=list)
    task_events: list[TaskEvent] = field(default_factory=list)
    feedback: list[Feedback] = field(default_factory=list)
    letters: list[Letter] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.alarms) + len(self.task_events) + len(self.feedback) + len(self.letters)


class SqlProjection:
    """Batched, idempotent writer: replaying any events changes no row."""

    def __init__(self, engine: Engine, zone: ZoneInfo | None = None) -> None:
        self.engine = engine
        self.zone = zone or ZoneInfo("UTC")

    def setup(self) -> None:
        """Bring the schema to the newest migration (Alembic ``upgrade head``); a SQLite file's
        directory is created first."""
        from airgrid.sinks.sql.migrate import upgrade

        if self.engine.dialect.name == "sqlite" and self.engine.url.database not in (None, "", ":memory:"):
            Path(self.engine.url.database).parent.mkdir(parents=True, exist_ok=True)
        upgrade(self.engine)

    def write(
        self,
        alarm_events: Sequence[AlarmEvent] = (),
        task_evts: Sequence[TaskEvent] = (),
        feedback_msgs: Sequence[Feedback] = (),
        letters: Sequence[Letter] = (),
    ) -> int:
        """One transaction; returns the number of new rows (0 for a replay)."""
        return self.write_batch(
            Batch(list(alarm_events), list(task_evts), list(feedback_msgs), list(letters))
        )

    def write_batch(self, batch: Batch) -> int:
        written = 0
        with self.engine.begin() as conn:
            written += _insert_new(conn, alarms, ["event_id"], [_alarm_row(a) for a in batch.alarms])
            written += _insert_new(
                conn, feedback, ["feedback_id"], [_feedback_row(f) for f in batch.feedback]
            )
            written += _insert_new(
                conn, dead_letters, ["letter_id"], [_letter_row(x, self.zone) for x in batch.letters]
            )
            if batch.task_events:
                written += _insert_new(
                    conn, task_events, ["task_id", "version"], [_event_row(e) for e in batch.task_events]
                )
                _upsert_tasks(conn, batch.task_events)
                written += _register_sources(conn, batch.task_events)
        return written


class UnsupportedDatabase(ValueError):
    """The projection database is neither SQLite nor PostgreSQL."""


def _insert(conn: Connection, table: Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise UnsupportedDatabase(
        f"AIRGRID_DATABASE_URL: airgrid's projection supports sqlite and postgresql, not {conn.dialect.name}"
    )


def _insert_new(conn: Connection, table: Table, keys: list[str], rows: list[dict[str, Any]]) -> int:
    """INSERT ... ON CONFLICT DO NOTHING; the count of rows that were new."""
    if not rows:
        return 0
    unique = list({tuple(r[k] for k in keys): r for r in rows}.values())
    pk = [table.c[k] for k in keys]
    new = 0
    for i in range(0, len(unique), CHUNK):  # SQLite caps the parameters of one statement
        part = unique[i : i + CHUNK]
        before = conn.scalar(select(func.count()).select_from(table).where(_key_in(pk, part, keys)))
        conn.execute(_insert(conn, table).on_conflict_do_nothing(index_elements=keys), part)
        new += len(part) - int(before or 0)
    return new


def _key_in(pk: list[Any], rows: list[dict[str, Any]], keys: list[str]) -> Any:
    if len(pk) == 1:
        return pk[0].in_([r[keys[0]] for r in rows])
    from sqlalchemy import tuple_

    return tuple_(*pk).in_([tuple(r[k] for k in keys) for r in rows])


def _upsert_tasks(conn: Connection, events: Sequence[TaskEvent]) -> None:
    """The task row follows its newest version; an older (replayed) event never rolls it back."""
    latest: dict[str, TaskEvent] = {}
    for e in events:
        if e.task_id not in latest or e.version > latest[e.task_id].version:
            latest[e.task_id] = e
    rows = [_task_row(e) for e in latest.values()]
    stmt = _insert(conn, tasks)
    changing = {c: stmt.excluded[c] for c in rows[0] if c not in ("task_id", "created_at")}
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["task_id"], set_=changing, where=tasks.c.version < stmt.excluded.version
        ),
        rows,
    )
    first = (
        select(func.min(task_events.c.at)).where(task_events.c.task_id == tasks.c.task_id).scalar_subquery()
    )
    # created_at is the time of version 1 (dispatch); until that event is seen (a replay that
    # starts mid-history), the earliest event known stands in for it.
    firsts = [{"tid": e.task_id, "at": e.at} for e in events if e.version == 1]
    if firsts:
        conn.execute(
            update(tasks).where(tasks.c.task_id == bindparam("tid")).values(created_at=bindparam("at")),
            firsts,
        )
    ids = list(latest)
    for i in range(0, len(ids), CHUNK):
        conn.execute(
            update(tasks)
            .where(tasks.c.task_id.in_(ids[i : i + CHUNK]), tasks.c.created_at.is_(None))
            .values(created_at=first)
        )


def _register_sources(conn: Connection, events: Sequence[TaskEvent]) -> int:
    """The sources named in submitted findings: one inspection row each (new ones only), then
    each touched source's figures recomputed from all its inspections (idempotent)."""
    rows = [
        {
            "feedback_id": e.feedback_id or e.event_id,
            "source_id": v.register_id,
            "task_id": e.task_id,
            "task_kind": e.kind,
            "grid_id": e.lineage.l3,
            "worker_id": e.worker_id,
            "at": e.at,
            "type": v.type,
            "name": v.name,
            "lon": v.lon,
            "lat": v.lat,
            "problem_found": int(v.problem_found),
            "handled": int(v.handled),
        }
        for e in events
        if e.type == "feedback_submitted" and e.findings is not None
        for v in e.findings.sources
    ]
    if not rows:
        return 0
    new = _insert_new(conn, source_inspections, ["feedback_id", "source_id"], rows)
    touched = sorted({str(r["source_id"]) for r in rows})
    figures: list[dict[str, Any]] = []
    for i in range(0, len(touched), CHUNK):
        found = conn.execute(
            select(source_inspections)
            .where(source_inspections.c.source_id.in_(touched[i : i + CHUNK]))
            .order_by(
                source_inspections.c.source_id, source_inspections.c.at, source_inspections.c.feedback_id
            )
        ).mappings()
        by_source: dict[str, list[Any]] = {}
        for row in found:
            by_source.setdefault(row["source_id"], []).append(row)
        figures += [_source_row(sid, seen) for sid, seen in by_source.items()]
    stmt = _insert(conn, sources)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["source_id"], set_={c: stmt.excluded[c] for c in figures[0] if c != "source_id"}
        ),
        figures,
    )
    return new


def _source_row(source_id: str, seen: list[Any]) -> dict[str, Any]:
    """A source's register row from its inspections (oldest first); the newest names it."""
    last = seen[-1]
    problems = sum(r["problem_found"] for r in seen)
    return {
        "source_id": source_id,
        "grid_id": last["grid_id"],
        "type": last["type"],
        "name": next((r["name"] for r in reversed(seen) if r["name"]), ""),
        "lon": next((r["lon"] for r in reversed(seen) if r["lon"] is not None), None),
        "lat": next((r["lat"] for r in reversed(seen) if r["lat"] is not None), None),
        "first_inspected": seen[0]["at"],
        "last_inspected": last["at"],
        "inspections": len(seen),
        "problems": problems,
        "handled": sum(r["handled"] for r in seen),
        "repeat_offences": max(0, problems - 1),  # problems found again after the first
    }


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
        "created_at": e.at if e.version == 1 else None,
        "updated_at": e.at,
        "deadline_at": e.deadline_at,
        "closed_at": closed,
        "kind": e.kind,
    }


def _feedback_row(f: Feedback) -> dict[str, Any]:
    found = f.findings
    return {
        "feedback_id": f.feedback_id,
        "task_id": f.task_id,
        "worker_id": f.worker_id,
        "action": f.action,
        "at": f.at,
        "source_found": None if found is None else int(found.source_found),
        "source_type": None if found is None else found.source_type,
        "sources_inspected": None if found is None else found.sources_inspected,
        "comment": f.comment,
        "payload": f.model_dump(mode="json"),
    }


def _letter_row(x: Letter, zone: ZoneInfo) -> dict[str, Any]:
    m = x.message
    at = m.at.astimezone(UTC)
    return {
        "letter_id": x.letter_id[:300],
        "topic": x.topic,
        "reason_code": m.reason_code[:64],
        "reason": m.reason,
        "day": at.astimezone(zone).date().isoformat(),
        "at": at,
        "task_id": m.task_id[:120] if isinstance(m, FeedbackRejected) and m.task_id else None,
        "feedback_id": m.feedback_id[:100] if isinstance(m, FeedbackRejected) and m.feedback_id else None,
        "key": m.key[:300] if isinstance(m, DeadLetter) and m.key else None,
        "payload": m.payload[:PAYLOAD_CHARS],
    }
