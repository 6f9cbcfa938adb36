"""The auditor: what the worker should have produced for the readings it was given (the same pure
functions run offline), against what the output topics and the projection hold."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from airgrid.config.settings import Settings
from airgrid.domain.detection import engine
from airgrid.domain.detection.compiled import RuleBook
from airgrid.domain.detection.state import StationState
from airgrid.domain.rules import load_rules
from airgrid.models.readings import Reading
from tests.helpers import Collector, consumer_lag, internal_refusals, read_topics, untasked_alarms


def wallclock_rules(settings: Settings) -> set[str]:
    """Rules that depend on the wall clock (a station's silence), not on the readings alone."""
    return {r.id for r in load_rules(settings.rules_file).rules if r.kind == "silent"}


def expected_alarms(settings: Settings, readings: Iterable[bytes]) -> dict[str, dict[str, Any]]:
    """event_id -> alarm event, for every reading in topic order (per station), no warning."""
    book = RuleBook(
        load_rules(settings.rules_file),
        grace_s=settings.late_grace_seconds,
        aqi_standard=settings.aqi_standard,
    )
    rules = book.for_level("none")
    states: dict[str, StationState] = {}
    out: dict[str, dict[str, Any]] = {}
    for raw in readings:
        r = Reading.model_validate(orjson.loads(raw))
        state = states.setdefault(r.station_id, StationState())
        state, events, _ = engine.evaluate(state, r, rules, r.observed_at.timestamp())
        for e in events:
            out[e.event_id] = e.model_dump(mode="json")
    return out


@dataclass
class Audit:
    """Counts of what was lost, duplicated or contradictory; the goal for each is zero."""

    expected: int
    lost: list[str] = field(default_factory=list)
    duplicated: int = 0  # the same event delivered again (allowed by at-least-once, counted)
    conflicting: list[str] = field(default_factory=list)  # same id, different content
    unexpected: list[str] = field(default_factory=list)
    task_conflicts: list[str] = field(default_factory=list)
    steps_twice: list[str] = field(default_factory=list)
    untasked: list[str] = field(default_factory=list)  # opened grid alarms no task dispatched or joined
    internal: list[str] = field(default_factory=list)  # refusals for an internal error (issue 18)
    notes: list[str] = field(default_factory=list)  # where to look when it is not clean

    KINDS = ("lost", "conflicting", "unexpected", "task_conflicts", "steps_twice", "untasked", "internal")

    @property
    def clean(self) -> bool:
        return not any(getattr(self, name) for name in self.KINDS)

    def explain(self) -> str:
        """A failure message: the counts, the first ids of each kind, and the notes."""
        parts = [f"expected {self.expected}, duplicated {self.duplicated}"]
        for name in self.KINDS:
            ids = getattr(self, name)
            if ids:
                parts.append(f"{name} {len(ids)}: {ids[:6]}")
        return "; ".join(parts + self.notes)


ALARM_FIELDS = ("kind", "alarm_id", "rule_id", "station_id", "value")


def audit(
    expected: dict[str, dict[str, Any]],
    alarms: list[dict[str, Any]],
    task_events: list[dict[str, Any]],
    ignore_rules: set[str],
    letters: Iterable[dict[str, Any]] = (),
) -> Audit:
    """What was lost, duplicated or contradictory; ``letters`` are the dead letters and refusals
    of the run (none may be for an internal error)."""
    seen: dict[str, dict[str, Any]] = {}
    expected = {k: v for k, v in expected.items() if v["rule_id"] not in ignore_rules}
    result = Audit(expected=len(expected))
    for a in alarms:
        if a["rule_id"] in ignore_rules:
            continue
        prev = seen.get(a["event_id"])
        if prev is not None:
            result.duplicated += 1
            if any(prev[k] != a[k] for k in ALARM_FIELDS):
                result.conflicting.append(a["event_id"])
            continue
        seen[a["event_id"]] = a
        want = expected.get(a["event_id"])
        if want is None:
            result.unexpected.append(a["event_id"])
        elif any(want[k] != a[k] for k in ALARM_FIELDS):
            result.conflicting.append(a["event_id"])
    result.lost = sorted(set(expected) - set(seen))
    versions: dict[tuple[str, int], dict[str, Any]] = {}
    for e in task_events:
        key = (e["task_id"], e["version"])
        prev = versions.get(key)
        if prev is not None and (prev["type"], prev["level"]) != (e["type"], e["level"]):
            result.task_conflicts.append(f"{key}: {prev['type']} vs {e['type']}")
        versions.setdefault(key, e)
    steps = Counter(
        (e["task_id"], e["type"], e["level"], e.get("note"))
        for e in versions.values()
        if e["type"] in ("reminded", "escalated")
    )
    result.steps_twice = [f"{k}" for k, n in steps.items() if n > 1]
    result.untasked = untasked_alarms([a for a in alarms if a["rule_id"] not in ignore_rules], task_events)
    result.internal = [f"{x['origin']}: {x['reason']}" for x in internal_refusals(letters)]
    return result


LETTER_TOPICS = ("readings.dlq", "alarms.dlq", "commands.dlq", "feedback.rejected")


async def settle(
    bootstrap: str,
    prefix: str,
    group: str,
    expected: dict[str, dict[str, Any]],
    ignore: set[str],
    seen: Collector,
    within: float,
) -> Audit:
    """Wait up to ``within`` seconds for the live collector to see every expected alarm, then audit.

    If something still looks lost, the output topics are read afresh from the beginning (the live
    collector went through the same faults as the worker, and the topics are the truth), and the
    answer says where the worker stands on its input, so a failure in CI points at its cause."""
    alarms, events = prefix + "alarms", prefix + "task-events"
    letter_topics = [prefix + t for t in LETTER_TOPICS]
    deadline = time.monotonic() + within
    result = audit(expected, seen.of(alarms), seen.of(events), ignore)
    while (result.lost or result.untasked) and time.monotonic() < deadline:
        await asyncio.sleep(1)
        result = audit(expected, seen.of(alarms), seen.of(events), ignore)
    letters = await read_topics(bootstrap, letter_topics)
    all_letters = [x for t in letter_topics for x in letters[t]]
    result = audit(expected, seen.of(alarms), seen.of(events), ignore, all_letters)
    if result.clean:
        return result
    fresh = await read_topics(bootstrap, [alarms, events])
    again = audit(expected, fresh[alarms], fresh[events], ignore, all_letters)
    again.notes.append(
        f"the live collector saw {len(seen.of(alarms))} alarms and {len(seen.of(events))} task events, "
        f"the topics hold {len(fresh[alarms])} and {len(fresh[events])}"
    )
    lag = await consumer_lag(bootstrap, group, prefix + "readings")
    again.notes.append(f"readings partition -> (committed, end): {lag}")
    lost_stations = sorted({e.split(":", 1)[0] for e in again.lost})
    again.notes.append(f"stations with lost alarms: {lost_stations}")
    return again


async def projection_gaps(
    url: str, alarms: list[dict[str, Any]], task_events: list[dict[str, Any]], within: float
) -> dict[str, list[Any]]:
    """What the SQL projection lacks, or holds beyond the topics: every alarm event (by event id)
    and task event (by task and version) once. Waits up to ``within`` seconds for it to catch up;
    ``{}`` when it agrees with the topics."""
    from sqlalchemy import create_engine, text

    want = {
        "alarms": {a["event_id"] for a in alarms},
        "task_events": {(e["task_id"], e["version"]) for e in task_events},
    }
    queries = {
        "alarms": "select event_id from alarms",
        "task_events": "select task_id, version from task_events",
    }
    engine_ = create_engine(url)
    deadline = time.monotonic() + within
    try:
        while True:
            gaps: dict[str, list[Any]] = {}
            with engine_.connect() as conn:
                for table, query in queries.items():
                    rows = [tuple(r) if len(r) > 1 else r[0] for r in conn.execute(text(query))]
                    if len(rows) != len(set(rows)):
                        gaps[f"{table}_twice"] = [k for k, n in Counter(rows).items() if n > 1][:10]
                    if missing := want[table] - set(rows):
                        gaps[f"{table}_missing"] = sorted(missing)[:10]
                    if extra := set(rows) - want[table]:
                        gaps[f"{table}_extra"] = sorted(extra)[:10]
            if not gaps or time.monotonic() > deadline:
                return gaps
            await asyncio.sleep(0.5)
    finally:
        engine_.dispose()
