"""Shared by the projection, report and PostgreSQL tests: a deterministic story of tasks, and
databases (a SQLite file, or a fresh PostgreSQL database per test)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from airgrid.config.settings import DATA_DIR
from airgrid.domain.directory import Directory
from airgrid.models.alarms import AlarmEvent
from airgrid.models.dlq import DeadLetter, Origin
from airgrid.models.feedback import Feedback, FeedbackRejected, Findings
from airgrid.models.tasks import Lineage, TaskEvent
from airgrid.sinks.sql import Letter

DIRECTORY = Directory.load(DATA_DIR / "grids.json")
START = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)  # Monday of ISO week 2026-W47, 10:00 in Shanghai
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def postgres_url() -> str:
    url = os.environ.get("AIRGRID_TEST_POSTGRES_URL")
    if not url:
        pytest.fail(
            'AIRGRID_TEST_POSTGRES_URL is not set: run `eval "$(bash scripts/ensure_postgres.sh)"` '
            "first (PostgreSQL tests never skip)",
            pytrace=False,
        )
    return url


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test; dropped afterwards."""
    base = make_url(postgres_url())
    name = f"airgrid_t{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.fail(f"PostgreSQL at {base.render_as_string()} cannot be used: {exc}", pytrace=False)
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every projection table, in key order (to compare before/after a replay)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table, order in (
            ("alarms", "event_id"),
            ("tasks", "task_id"),
            ("task_events", "task_id, version"),
            ("feedback", "feedback_id"),
            ("dead_letters", "letter_id"),
            ("sources", "source_id"),
            ("source_inspections", "feedback_id, source_id"),
        ):
            rows = conn.execute(text(f"select * from {table} order by {order}"))
            out[table] = [tuple(str(v) for v in r) for r in rows]
    return out


class Story:
    """Builds task events as the owner would emit them, version by version."""

    def __init__(self) -> None:
        self.events: list[TaskEvent] = []
        self.alarms: list[AlarmEvent] = []
        self.feedback: list[Feedback] = []

    def task(self, station: str, at: datetime, severity: str = "major") -> _Task:
        lineage = DIRECTORY.lineage(station)
        assert lineage is not None, station
        t = _Task(self, f"T-{station}-{at.strftime('%Y%m%d%H%M')}", station, lineage, severity)
        alarm = AlarmEvent(
            event_id=f"A-{station}-{at:%Y%m%d%H%M}:opened",
            alarm_id=f"A-{station}-{at:%Y%m%d%H%M}",
            kind="opened",
            station_id=station,
            rule_id="pm25_1h_exceedance",
            pollutant="pm25",
            severity=severity,  # type: ignore[arg-type]
            route="grid",
            value=120.0,
            threshold=75.0,
            period="1h",
            aqi=160,
            window_start=at - HOUR,
            window_end=at,
            opened_at=at,
            emitted_at=at,
        )
        self.alarms.append(alarm)
        t.deadline = at + DAY
        t.emit("dispatched", at, alarm_id=alarm.alarm_id)
        return t


class _Task:
    def __init__(self, story: Story, task_id: str, station: str, lineage: Lineage, severity: str) -> None:
        self.story, self.task_id, self.station, self.lineage = story, task_id, station, lineage
        self.severity = severity
        self.version = 0
        self.level = 3
        self.state = "dispatched"
        self.deadline: datetime | None = None
        self.n_fb = 0
        self.kind: dict[str, Any] = {}  # a supervision task: kind and period on every event

    def emit(self, etype: str, at: datetime, **extra: Any) -> _Task:
        self.version += 1
        self.story.events.append(
            TaskEvent(
                event_id=f"{self.task_id}:{self.version}",
                task_id=self.task_id,  # type: ignore[arg-type]
                version=self.version,
                type=etype,  # type: ignore[arg-type]
                station_id=self.station,
                state=self.state,  # type: ignore[arg-type]
                severity=self.severity,  # type: ignore[arg-type]
                level=self.level,  # type: ignore[arg-type]
                grid_id=self.lineage.at(self.level),
                lineage=self.lineage,
                at=at,
                deadline_at=self.deadline,
                **self.kind,
                **extra,
            )
        )
        return self

    def remind(self, at: datetime) -> _Task:
        return self.emit("reminded", at, note="deadline near")

    def escalate(self, at: datetime) -> _Task:
        self.level -= 1
        return self.emit("escalated", at, note="deadline passed")

    def act(self, action: str, at: datetime, worker: str | None = None, **fb: Any) -> _Task:
        state, etype = {
            "acknowledge": ("acknowledged", "acknowledged"),
            "on_site": ("on_site", "on_site"),
            "submit": ("feedback_submitted", "feedback_submitted"),
            "approve": ("closed", "closed"),
            "reject": ("on_site", "feedback_rejected"),
        }[action]
        self.state = state
        self.n_fb += 1
        fid = f"fb-{self.task_id}-{self.n_fb}"
        wid = worker or (
            f"W-{self.lineage.l2}" if action in ("approve", "reject") else f"W-{self.lineage.l3}-1"
        )
        findings = Findings(**fb) if fb else None
        self.story.feedback.append(
            Feedback(
                feedback_id=fid,
                task_id=self.task_id,  # type: ignore[arg-type]
                worker_id=wid,
                action=action,  # type: ignore[arg-type]
                at=at,
                findings=findings,
            )
        )
        return self.emit(etype, at, worker_id=wid, feedback_id=fid, findings=findings)


def patrol(story: Story, grid: str, start: datetime, end: datetime) -> _Task:
    """A weekly patrol task of a level-3 grid, due at the end of its period."""
    t = _Task(
        story,
        f"T-{grid}-P{start.astimezone(UTC):%Y%m%d%H%M%S}",
        grid,
        DIRECTORY.lineage_of_grid(grid),
        "minor",
    )
    t.kind = {"kind": "patrol", "period_start": start, "period_end": end}
    t.deadline = end
    t.emit("dispatched", start, note="patrol")
    return t


def week_story() -> Story:
    """Six tasks in ISO week 2026-W47 (and one in W48) over three stations; every outcome once:
    closed on time, closed late after escalation, still open, rejected once then closed,
    a repeat at the same station, one never acknowledged (escalated to level 1)."""
    s = Story()
    a = s.task("ST001", START)  # on time, two patrols
    a.act("acknowledge", START + HOUR).act("on_site", START + 2 * HOUR)
    a.act(
        "submit",
        START + 5 * HOUR,
        source_found=True,
        source_type="construction_dust",
        sources_inspected=3,
        sources=[{"id": "SRC-1", "type": "construction_dust", "problem_found": True, "handled": True}],
    )
    a.act("approve", START + 6 * HOUR)
    b = s.task("ST002", START + DAY)  # late: reminded, escalated to level 2, then closed
    b.remind(START + DAY + 20 * HOUR).escalate(START + 2 * DAY + HOUR)
    b.act("on_site", START + 2 * DAY + 2 * HOUR)
    b.act("submit", START + 2 * DAY + 3 * HOUR, source_found=False)
    b.act("approve", START + 2 * DAY + 4 * HOUR)
    c = s.task("ST003", START + 2 * DAY)  # still open: acknowledged only
    c.act("acknowledge", START + 2 * DAY + HOUR)
    d = s.task("ST001", START + 3 * DAY)  # repeat at ST001 (within 30 days); rejected once
    d.act("on_site", START + 3 * DAY + HOUR)
    d.act("submit", START + 3 * DAY + 2 * HOUR, source_found=True, source_type="coal_burning")
    d.act("reject", START + 3 * DAY + 3 * HOUR)
    d.act("on_site", START + 3 * DAY + 4 * HOUR)
    d.act(
        "submit",
        START + 3 * DAY + 5 * HOUR,
        source_found=True,
        source_type="coal_burning",
        sources=[
            {"id": "SRC-1", "type": "construction_dust", "name": "tower site", "problem_found": True},
            {"type": "coal_burning", "lon": 87.61, "lat": 43.79, "problem_found": True, "handled": True},
        ],
    )
    d.act("approve", START + 3 * DAY + 6 * HOUR)
    e = s.task("ST002", START + 4 * DAY, severity="critical")  # never answered: up to level 1
    e.remind(START + 4 * DAY + 20 * HOUR).escalate(START + 5 * DAY + HOUR).escalate(
        START + 5 * DAY + 5 * HOUR
    )
    f = s.task("ST003", START + 7 * DAY + HOUR)  # next week (W48)
    f.act("acknowledge", START + 7 * DAY + 2 * HOUR)
    return s


def letters() -> list[Letter]:
    at = START + HOUR
    out = [
        Letter(
            "readings.dlq",
            DeadLetter(
                reason="not JSON",
                reason_code="not_json",
                origin=Origin(topic="readings", partition=0, offset=i),
                key="ST001",
                payload="{not json",
                at=at + i * HOUR,
            ),
            f"readings.dlq:0:{i}",
        )
        for i in range(3)
    ]
    out.append(
        Letter(
            "feedback.rejected",
            FeedbackRejected(
                reason="worker's grid is not in the chain",
                reason_code="wrong_grid",
                feedback_id="fb-x",
                task_id="T-ST001-202611160200",
                origin=None,
                payload="{}",
                at=at + DAY,
            ),
            "feedback.rejected:1:7",
        )
    )
    return out


def check_projection(url: str) -> None:
    """The projection contract, on any database: history with feedback actions, current task rows,
    dead-letter counts, and a full replay (and an out-of-order replay) that changes no row."""
    from airgrid.sinks.sql import SqlProjection, dlq_counts, get_task, make_engine, task_history

    engine = make_engine(url)
    sink = SqlProjection(engine, zone=DIRECTORY_ZONE)
    sink.setup()
    s = week_story()
    mail = letters()
    # in batches as the agent sees them: several tasks interleaved per batch
    written = 0
    for i in range(0, len(s.events), 7):
        written += sink.write(
            s.alarms if i == 0 else [], s.events[i : i + 7], s.feedback if i == 0 else [], mail
        )
    visits = sum(len(e.findings.sources) for e in s.events if e.type == "feedback_submitted" and e.findings)
    assert visits == 3
    assert written == len(s.alarms) + len(s.events) + len(s.feedback) + len(mail) + visits
    before = dump(engine)
    assert len(before["tasks"]) == 6 and len(before["task_events"]) == len(s.events)

    closed = get_task(engine, "T-ST002-202611170200")
    assert closed is not None
    assert (closed["state"], closed["level"], closed["grid_id"]) == ("closed", 2, "L2-0101")
    assert closed["created_at"] == START + DAY and closed["closed_at"] == START + 2 * DAY + 4 * HOUR
    assert closed["version"] == 6
    history = task_history(engine, "T-ST001-202611190200")
    assert [(h["type"], h["feedback_action"]) for h in history] == [
        ("dispatched", None),
        ("on_site", "on_site"),
        ("feedback_submitted", "submit"),
        ("feedback_rejected", "reject"),
        ("on_site", "on_site"),
        ("feedback_submitted", "submit"),
        ("closed", "approve"),
    ]
    assert history[3]["worker_id"] == "W-L2-0101" and history[0]["at"].tzinfo is not None
    counts = {(c["day"], c["topic"], c["reason_code"]): c["count"] for c in dlq_counts(engine)}
    assert counts == {
        ("2026-11-16", "readings.dlq", "not_json"): 3,
        ("2026-11-17", "feedback.rejected", "wrong_grid"): 1,
    }
    from airgrid.sinks.sql import list_sources

    register = {r["source_id"]: r for r in list_sources(engine)}
    assert sorted(register) == ["SRC-1", "coal_burning@43.7900,87.6100"]
    src = register["SRC-1"]
    assert (src["inspections"], src["problems"], src["handled"], src["repeat_offences"]) == (2, 2, 1, 1)
    assert (src["name"], src["grid_id"]) == ("tower site", "L3-010102")
    assert src["first_inspected"] == START + 5 * HOUR and src["last_inspected"] == START + 3 * DAY + 5 * HOUR

    # replay everything, in one batch, then in reverse order: nothing changes
    assert sink.write(s.alarms, s.events, s.feedback, mail) == 0
    assert sink.write(s.alarms[::-1], s.events[::-1], s.feedback[::-1], mail[::-1]) == 0
    for e in s.events:
        assert sink.write([], [e]) == 0
    assert dump(engine) == before
    sink.setup()  # a second upgrade is a no-op too
    assert dump(engine) == before
    engine.dispose()


DIRECTORY_ZONE = __import__("zoneinfo").ZoneInfo("Asia/Shanghai")


def _legacy_schema() -> str:
    """The DDL the foundation's ``metadata.create_all`` produced on SQLite, with one task."""
    return """
    CREATE TABLE alarms (event_id VARCHAR(200) NOT NULL PRIMARY KEY, alarm_id VARCHAR(200) NOT NULL,
      kind VARCHAR(16) NOT NULL, station_id VARCHAR(64) NOT NULL, rule_id VARCHAR(64) NOT NULL,
      pollutant VARCHAR(8), severity VARCHAR(16) NOT NULL, route VARCHAR(16) NOT NULL, value FLOAT,
      threshold FLOAT, aqi INTEGER, window_start DATETIME NOT NULL, opened_at DATETIME NOT NULL,
      emitted_at DATETIME NOT NULL);
    CREATE TABLE tasks (task_id VARCHAR(120) NOT NULL PRIMARY KEY, station_id VARCHAR(64) NOT NULL,
      state VARCHAR(24) NOT NULL, version INTEGER NOT NULL, severity VARCHAR(16) NOT NULL,
      level INTEGER NOT NULL, grid_id VARCHAR(64) NOT NULL, grid_l3 VARCHAR(64) NOT NULL,
      grid_l2 VARCHAR(64) NOT NULL, grid_l1 VARCHAR(64) NOT NULL, key_grid INTEGER NOT NULL,
      created_at DATETIME, updated_at DATETIME NOT NULL, deadline_at DATETIME, closed_at DATETIME);
    CREATE TABLE task_events (task_id VARCHAR(120) NOT NULL, version INTEGER NOT NULL,
      type VARCHAR(32) NOT NULL, state VARCHAR(24) NOT NULL, level INTEGER NOT NULL,
      grid_id VARCHAR(64) NOT NULL, at DATETIME NOT NULL, worker_id VARCHAR(64),
      feedback_id VARCHAR(100), alarm_id VARCHAR(200), note TEXT, payload JSON NOT NULL,
      PRIMARY KEY (task_id, version));
    INSERT INTO tasks VALUES ('T-ST001-202601010000', 'ST001', 'closed', 3, 'major', 3, 'L3-010102',
      'L3-010102', 'L2-0101', 'L1-01', 0, '2026-01-01 00:00:00', '2026-01-01 03:00:00', NULL,
      '2026-01-01 03:00:00');
    """
