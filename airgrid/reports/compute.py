"""Report figures, computed from task events (pure functions; the CLI loads the events).

Definitions used by every report:
- a task's *cohort* period is the period it was dispatched in;
- *on time*: the task's first ``feedback_submitted`` came at or before the deadline it was
  dispatched with (``deadline_at`` of version 1; 24 h by the seed's default policy);
- a *patrol* is an ``on_site`` event (a grid worker went to the site);
- *closed*: the task reached ``closed`` before the end of the period;
- *escalated*: the task had at least one ``escalated`` event (to level 2, or on to level 1);
- a *repeat alarm*: a task at a station that already had a task dispatched in the 30 days before.

Yearly assessment score of a level-3 grid (0-100, tasks dispatched in the year)::

    score = 100 * (0.40 * on_time_rate + 0.30 * closure_rate
                   + 0.15 * (1 - escalation_rate) + 0.15 * (1 - repeat_rate))

where each rate is a count over the grid's tasks of the year. Grade A >= 90, B >= 75, C >= 60,
else D. A grid with no task in the year has no score.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from airgrid.reports.periods import Period

REPEAT_WINDOW = timedelta(days=30)
WEIGHTS = {"on_time": 0.40, "closure": 0.30, "no_escalation": 0.15, "no_repeat": 0.15}


@dataclass
class TaskFacts:
    """What the reports need of one task, folded from its events."""

    task_id: str
    station_id: str
    severity: str
    l3: str
    l2: str
    l1: str
    dispatched_at: datetime | None = None
    deadline_at: datetime | None = None
    first_feedback_at: datetime | None = None
    closed_at: datetime | None = None
    escalated_to: list[tuple[int, datetime]] = field(default_factory=list)
    reminders: list[datetime] = field(default_factory=list)
    patrols: list[datetime] = field(default_factory=list)
    submissions: list[datetime] = field(default_factory=list)
    source_types: list[str] = field(default_factory=list)
    source_found: bool = False
    repeat: bool = False

    @property
    def on_time(self) -> bool:
        return bool(
            self.first_feedback_at and self.deadline_at and self.first_feedback_at <= self.deadline_at
        )

    def closed_by(self, end: datetime) -> bool:
        return self.closed_at is not None and self.closed_at < end

    def feedback_hours(self) -> float | None:
        if self.first_feedback_at and self.dispatched_at:
            return (self.first_feedback_at - self.dispatched_at).total_seconds() / 3600
        return None


def fold(events: Iterable[dict[str, Any]]) -> list[TaskFacts]:
    """Task facts from projected task events (rows of ``task_events`` with their payload)."""
    facts: dict[str, TaskFacts] = {}
    for e in sorted(events, key=lambda r: (r["task_id"], r["version"])):
        p = e["payload"]
        t = facts.get(e["task_id"])
        if t is None:
            lin = p["lineage"]
            t = facts[e["task_id"]] = TaskFacts(
                e["task_id"], p["station_id"], p["severity"], lin["l3"], lin["l2"], lin["l1"]
            )
        at, kind = e["at"], e["type"]
        if e["version"] == 1:
            t.dispatched_at = at
            t.deadline_at = _time(p.get("deadline_at"))
        if kind == "escalated":
            t.escalated_to.append((e["level"], at))
        elif kind == "reminded":
            t.reminders.append(at)
        elif kind == "on_site":
            t.patrols.append(at)
        elif kind == "feedback_submitted":
            t.submissions.append(at)
            t.first_feedback_at = t.first_feedback_at or at
            findings = p.get("findings") or {}
            t.source_found = t.source_found or bool(findings.get("source_found"))
            if findings.get("source_type"):
                t.source_types.append(findings["source_type"])
        elif kind == "closed":
            t.closed_at = at
    ordered = sorted(facts.values(), key=lambda f: (f.dispatched_at is None, f.dispatched_at, f.task_id))
    last: dict[str, datetime] = {}
    for f in ordered:
        if f.dispatched_at is None:
            continue
        prev = last.get(f.station_id)
        f.repeat = prev is not None and f.dispatched_at - prev <= REPEAT_WINDOW
        last[f.station_id] = f.dispatched_at
    return ordered


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _rate(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


def weekly(facts: list[TaskFacts], period: Period, grids: list[str]) -> list[dict[str, Any]]:
    """Per level-3 grid: tasks, patrols, feedback on time (the level-3 grids' weekly patrol)."""
    rows = []
    for g in grids:
        mine = [f for f in facts if f.l3 == g]
        cohort = [f for f in mine if period.contains(f.dispatched_at)]
        rows.append(
            {
                "grid": g,
                "tasks": len(cohort),
                "patrols": sum(1 for f in mine for t in f.patrols if period.contains(t)),
                "feedback": sum(1 for f in mine for t in f.submissions if period.contains(t)),
                "on_time": sum(f.on_time for f in cohort),
                "on_time_rate": _rate(sum(f.on_time for f in cohort), len(cohort)),
                "reminders": sum(1 for f in mine for t in f.reminders if period.contains(t)),
                "escalations": sum(1 for f in mine for _, t in f.escalated_to if period.contains(t)),
                "closed": sum(1 for f in mine if period.contains(f.closed_at)),
                "open_at_end": sum(
                    1
                    for f in mine
                    if f.dispatched_at and f.dispatched_at < period.end and not f.closed_by(period.end)
                ),
            }
        )
    return rows


def monthly(facts: list[TaskFacts], period: Period, grids: list[str]) -> list[dict[str, Any]]:
    """Per level-2 grid: the dispatch summary of the month."""
    rows = []
    for g in grids:
        cohort = [f for f in facts if f.l2 == g and period.contains(f.dispatched_at)]
        sev = Counter(f.severity for f in cohort)
        hours = [h for f in cohort if (h := f.feedback_hours()) is not None]
        rows.append(
            {
                "grid": g,
                "dispatched": len(cohort),
                "critical": sev["critical"],
                "major": sev["major"],
                "minor": sev["minor"] + sev["info"],
                "level3_grids": len({f.l3 for f in cohort}),
                "escalated_to_l2": sum(any(lv == 2 for lv, _ in f.escalated_to) for f in cohort),
                "escalated_to_l1": sum(any(lv == 1 for lv, _ in f.escalated_to) for f in cohort),
                "closed": sum(f.closed_by(period.end) for f in cohort),
                "on_time_rate": _rate(sum(f.on_time for f in cohort), len(cohort)),
                "median_feedback_h": round(statistics.median(hours), 1) if hours else None,
            }
        )
    return rows


def quarterly(facts: list[TaskFacts], period: Period, grids: list[str]) -> list[dict[str, Any]]:
    """Per level-1 grid: the quarter's bulletin."""
    rows = []
    for g in grids:
        mine = [f for f in facts if f.l1 == g]
        cohort = [f for f in mine if period.contains(f.dispatched_at)]
        sources = Counter(s for f in cohort for s in f.source_types[:1])
        rows.append(
            {
                "grid": g,
                "tasks": len(cohort),
                "closed": sum(f.closed_by(period.end) for f in cohort),
                "closure_rate": _rate(sum(f.closed_by(period.end) for f in cohort), len(cohort)),
                "on_time_rate": _rate(sum(f.on_time for f in cohort), len(cohort)),
                "patrols": sum(1 for f in mine for t in f.patrols if period.contains(t)),
                "escalated": sum(bool(f.escalated_to) for f in cohort),
                "sources_found": sum(f.source_found for f in cohort),
                "top_source": sources.most_common(1)[0][0] if sources else "",
                "stations": len({f.station_id for f in cohort}),
            }
        )
    return rows


def assessment(facts: list[TaskFacts], period: Period, grids: list[str]) -> list[dict[str, Any]]:
    """Per level-3 grid: the yearly score (formula in the module docstring), best first."""
    by_grid: dict[str, list[TaskFacts]] = defaultdict(list)
    for f in facts:
        if period.contains(f.dispatched_at):
            by_grid[f.l3].append(f)
    rows: list[dict[str, Any]] = []
    for g in grids:
        cohort = by_grid.get(g, [])
        n = len(cohort)
        on_time = sum(f.on_time for f in cohort)
        closed = sum(f.closed_by(period.end) for f in cohort)
        escalated = sum(bool(f.escalated_to) for f in cohort)
        repeats = sum(f.repeat for f in cohort)
        rows.append(
            {
                "grid": g,
                "tasks": n,
                "on_time_rate": _rate(on_time, n),
                "closure_rate": _rate(closed, n),
                "escalations": escalated,
                "repeat_alarms": repeats,
                "score": score(on_time, closed, escalated, repeats, n),
            }
        )
    rows.sort(key=lambda r: (r["score"] is None, -float(r["score"] or 0), r["grid"]))
    for rank, r in enumerate(rows, 1):
        r["grade"] = grade(r["score"])
        r["rank"] = rank if r["score"] is not None else None
    return rows


def score(on_time: int, closed: int, escalated: int, repeats: int, n: int) -> float | None:
    if n == 0:
        return None
    w = WEIGHTS
    value = (
        w["on_time"] * on_time / n
        + w["closure"] * closed / n
        + w["no_escalation"] * (1 - escalated / n)
        + w["no_repeat"] * (1 - repeats / n)
    )
    return round(100 * value, 1)


def grade(value: float | None) -> str:
    if value is None:
        return "-"
    return "A" if value >= 90 else "B" if value >= 75 else "C" if value >= 60 else "D"
