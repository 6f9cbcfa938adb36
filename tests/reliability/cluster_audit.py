"""The cluster fault campaign's audit: the auditor's checks of alarms, deadline steps and
internal refusals, and beside them what several workers and a feedback flow add: each task's
versions without a hole, each feedback applied once or refused, the refused readings in their
dead-letter topic, the union of the workers' SQL projections complete."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airgrid.config.settings import load_settings
from tests.helpers import Worker, read_topics
from tests.reliability.auditor import LETTER_TOPICS, audit, expected_alarms, wallclock_rules
from tests.reliability.cluster_probe import Feeder


async def final_audit(bootstrap: str, p: str, feeder: Feeder, workers: list[Worker]) -> dict[str, Any]:
    """Everything the topics and the projections hold against what the input asked for."""
    settings = load_settings()
    expected = expected_alarms(settings, feeder.readings)
    ignore = wallclock_rules(settings)
    letters_t = [p + t for t in LETTER_TOPICS]
    problems: dict[str, Any] = {}
    deadline = time.monotonic() + 120
    while True:  # until every alarm is out, every feedback answered and the deadlines are done
        got = await read_topics(bootstrap, [p + "alarms", p + "task-events", *letters_t])
        alarms, events = got[p + "alarms"], got[p + "task-events"]
        letters = [x for t in letters_t for x in got[t]]
        result = audit(expected, alarms, events, ignore, letters)
        answered = {e.get("feedback_id") for e in events} | {x.get("feedback_id") for x in letters}
        unanswered = sorted((set(feeder.sent_feedback) | set(feeder.bad_feedback)) - answered)
        if (not result.lost and not unanswered and quiet(events)) or time.monotonic() > deadline:
            break
        await asyncio.sleep(2)
    if not result.clean:
        problems["audit"] = result.explain()
    if unanswered:
        problems["feedback_unanswered"] = unanswered[:10]
    problems.update(task_gaps(events))
    problems.update(feedback_outcomes(feeder, events, got[p + "feedback.rejected"]))
    dlq = {x["payload"] for x in got[p + "readings.dlq"]}
    if missing := [r for r in feeder.refused if r.decode() not in dlq]:
        problems["refused_not_in_dlq"] = [m[:60] for m in missing[:5]]
    dbs = [f"sqlite:///{Path(w.env['AIRGRID_DATA_DIR']) / 'airgrid.db'}" for w in workers]
    if gaps := await projection_union_gaps(dbs, alarms, events, 60):
        problems["projection"] = gaps
    keys = {(e["task_id"], e["version"]) for e in events}
    return {
        "readings": len(feeder.readings),
        "expected_alarms": result.expected,
        "lost_alarms": len(result.lost),
        "alarm_copies": result.duplicated,
        "alarms_contradicted": len(result.conflicting),
        "task_versions_contradicted": len(result.task_conflicts),
        "deadline_steps_twice": len(result.steps_twice),
        "task_events": len(keys),
        "task_event_copies": len(events) - len(keys),
        "tasks": len({e["task_id"] for e in events}),
        "feedback": len(feeder.sent_feedback),
        "refused_readings": len(feeder.refused),
        "refused_feedback": len(feeder.bad_feedback),
        "problems": problems,
    }


def quiet(events: list[dict[str, Any]]) -> bool:
    """No task event for the last 8 seconds (the short policy's chain is 6 + 3 + 3 s)."""
    if not events:
        return False
    last = max(datetime.fromisoformat(e["at"]) for e in events)
    return datetime.now(UTC) - last > timedelta(seconds=8)


def task_gaps(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Each task's versions run 1, 2, ... without a hole (a hole is a lost task event)."""
    versions: dict[str, set[int]] = defaultdict(set)
    for e in events:
        versions[e["task_id"]].add(e["version"])
    holes = [f"{t}: {sorted(v)}" for t, v in versions.items() if v != set(range(1, max(v) + 1))]
    return {"task_event_holes": holes[:10]} if holes else {}


def feedback_outcomes(
    feeder: Feeder, events: list[dict[str, Any]], rejected: list[dict[str, Any]]
) -> dict[str, list[str]]:
    """Each feedback applied once (no event type of it in two task versions; a submission makes
    ``feedback_submitted`` and ``departments_notified``) or refused, never both; the feedback on
    a task that does not exist refused as ``unknown_task``."""
    applied: dict[tuple[str, str], set[int]] = defaultdict(set)  # (feedback, event type) -> versions
    for e in events:
        if e.get("feedback_id"):
            applied[(e["feedback_id"], e["type"])].add(e["version"])
    refused: dict[str, set[str]] = defaultdict(set)
    for x in rejected:
        refused[x["feedback_id"]].add(x["reason_code"])
    out: dict[str, list[str]] = {}
    twice = [f"{f} {t}" for (f, t), v in applied.items() if len(v) > 1]
    applied_ids = {f for f, _ in applied}
    both = [f for f in feeder.sent_feedback if f in applied_ids and refused.get(f)]
    ghosts = [f for f in feeder.bad_feedback if refused.get(f) != {"unknown_task"}]
    if twice:
        out["feedback_applied_twice"] = twice[:10]
    if both:
        out["feedback_applied_and_refused"] = both[:10]
    if ghosts:
        out["unknown_task_not_refused"] = ghosts[:10]
    return out


async def projection_union_gaps(
    urls: list[str], alarms: list[dict[str, Any]], events: list[dict[str, Any]], within: float
) -> dict[str, list[Any]]:
    """What the workers' SQL projections together lack, or hold beyond the topics: each worker
    projects the partitions its projection consumer holds, so the union must hold everything."""
    from sqlalchemy import create_engine, text

    want = {
        "alarms": {a["event_id"] for a in alarms},
        "task_events": {(e["task_id"], e["version"]) for e in events},
    }
    queries = {
        "alarms": "select event_id from alarms",
        "task_events": "select task_id, version from task_events",
    }
    engines = [create_engine(url) for url in urls]
    deadline = time.monotonic() + within
    try:
        while True:
            have: dict[str, set[Any]] = {table: set() for table in queries}
            for engine_ in engines:
                with engine_.connect() as conn:
                    for table, query in queries.items():
                        have[table] |= {tuple(r) if len(r) > 1 else r[0] for r in conn.execute(text(query))}
            gaps: dict[str, list[Any]] = {}
            for table in queries:
                if missing := want[table] - have[table]:
                    gaps[f"{table}_missing"] = sorted(missing)[:10]
                if extra := have[table] - want[table]:
                    gaps[f"{table}_extra"] = sorted(extra)[:10]
            if not gaps or time.monotonic() > deadline:
                return gaps
            await asyncio.sleep(1)
    finally:
        for engine_ in engines:
            engine_.dispose()
