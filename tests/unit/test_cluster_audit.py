"""The cluster campaign's own checks fail a run on a lost task event (a hole in a task's
versions), on feedback applied twice or both applied and refused, on feedback for a task that
does not exist not refused as such, and on a projection missing what the topics hold."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from tests.helpers import Collector
from tests.reliability.cluster_audit import feedback_outcomes, projection_union_gaps, task_gaps
from tests.reliability.cluster_probe import Feeder


def event(task: str, version: int, kind: str, feedback_id: str | None = None) -> dict[str, Any]:
    return {"task_id": task, "version": version, "type": kind, "feedback_id": feedback_id}


def test_a_hole_in_a_tasks_versions_is_a_lost_event() -> None:
    whole = [event("T1", 1, "dispatched"), event("T1", 2, "reminded"), event("T1", 2, "reminded")]
    assert task_gaps(whole) == {}
    assert task_gaps([event("T1", 1, "dispatched"), event("T1", 3, "escalated")]) == {
        "task_event_holes": ["T1: [1, 3]"]
    }


def feeder(sent: dict[str, str], bad: list[str]) -> Feeder:
    seen = Collector("127.0.0.1:9", [])
    f = Feeder("127.0.0.1:9", "p.", [], datetime.now(UTC), seen, lambda: datetime.now(UTC))
    f.sent_feedback.update(sent)
    f.bad_feedback.extend(bad)
    return f


def test_feedback_is_applied_once_or_refused_never_both() -> None:
    f = feeder({"a": "acknowledge", "s": "submit", "x": "on_site"}, ["ghost"])
    events = [
        event("T1", 2, "acknowledged", "a"),
        event("T1", 2, "acknowledged", "a"),  # the same event again: at-least-once, fine
        event("T1", 3, "feedback_submitted", "s"),
        event("T1", 4, "departments_notified", "s"),  # one submission, two events
    ]
    refused = [
        {"feedback_id": "x", "reason_code": "illegal_transition"},
        {"feedback_id": "ghost", "reason_code": "unknown_task"},
    ]
    assert feedback_outcomes(f, events, refused) == {}
    twice = [*events, event("T1", 5, "acknowledged", "a")]
    both = [*refused, {"feedback_id": "s", "reason_code": "illegal_transition"}]
    wrong = [refused[0], {"feedback_id": "ghost", "reason_code": "internal"}]
    assert feedback_outcomes(f, twice, refused) == {"feedback_applied_twice": ["a acknowledged"]}
    assert feedback_outcomes(f, events, both) == {"feedback_applied_and_refused": ["s"]}
    assert feedback_outcomes(f, events, wrong) == {"unknown_task_not_refused": ["ghost"]}


def test_the_union_of_the_projections_must_hold_every_event(tmp_path: Path) -> None:
    urls = []
    for n, rows in enumerate([[("T1", 1)], [("T1", 2)]]):
        url = f"sqlite:///{tmp_path / f'{n}.db'}"
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("create table alarms (event_id text)"))
            conn.execute(text("create table task_events (task_id text, version int)"))
            for task, version in rows:
                conn.execute(text("insert into task_events values (:t, :v)"), {"t": task, "v": version})
        engine.dispose()
        urls.append(url)
    events = [event("T1", 1, "dispatched"), event("T1", 2, "reminded")]
    assert asyncio.run(projection_union_gaps(urls, [], events, 0)) == {}
    missing = asyncio.run(projection_union_gaps(urls[:1], [], events, 0))
    assert missing == {"task_events_missing": [("T1", 2)]}
