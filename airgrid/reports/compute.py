"""Report figures, computed from task events (pure functions; the CLI loads the events).

Definitions used by every report:
- a task's *cohort* period is the period it was dispatched in;
- *on time*: the task's first ``feedback_submitted`` came at or before the deadline it was
  dispatched with (``deadline_at`` of version 1; 24 h by the seed's default policy);
- *tasks* are alarm tasks; the scheduled supervision tasks (policy ``[supervision]``) count apart:
- a *patrol* is a patrol task's report (its first ``feedback_submitted``), in the period it came;
  *patrols due*: patrol tasks whose period ends in the period; *patrol completion*: the share of
  them reported by the end of their period;
- a *site visit* is an ``on_site`` event of an alarm task (a grid worker went to the site);
- an *inspection* is a pollution source named in a submitted report (patrol or alarm task), in
  the period it was reported; *problems found*: those where a problem was found;
- *closed*: the task reached ``closed`` before the end of the period;
- *escalated*, in every report: a task of the cohort that had at least one ``escalated`` event
  (to level 2, or on to level 1) before the end of the period; *escalated to level 1*: one of
  them that reached level 1;
- a *repeat alarm*: a task at a station that already had a task dispatched in the 30 days before;
- *overdue*: at the cut-off (the period's end, or now while the period runs), a task that is open,
  has no feedback submitted (dispatched, acknowledged or on site) and whose current feedback
  deadline has passed.

Every report has a row per grid and a total row over the grids in scope (figures recomputed
over all their tasks, not summed rates), and the change of its headline figures against the
previous period (``CHANGES``), computed as that period's report would have shown them.

Yearly assessment score of a level-3 grid (0-100, tasks dispatched in the year)::

    score = 100 * (0.40 * on_time_rate + 0.30 * closure_rate
                   + 0.15 * (1 - escalation_rate) + 0.15 * (1 - repeat_rate))

where each rate is a count over the grid's tasks of the year. When the grid had patrols due in the
year, the patrol completion rate takes 15 % of the score::

    score = 0.85 * score_of_tasks + 15 * patrol_completion_rate

(a grid with patrols due and no alarm task: ``100 * patrol_completion_rate``). Grade A >= 90,
B >= 75, C >= 60, else D. A grid with neither has no score.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from airgrid.reports.periods import Period

REPEAT_WINDOW = timedelta(days=30)
SECOND = timedelta(seconds=1)
WEIGHTS = {"on_time": 0.40, "closure": 0.30, "no_escalation": 0.15, "no_repeat": 0.15}
PATROL_WEIGHT = 0.15


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
    # as of the newest event folded: state, responsible grid and level, feedback deadline
    state: str = "dispatched"
    grid_id: str = ""
    level: int = 3
    current_deadline: datetime | None = None
    kind: str = "alarm"  # or a supervision duty: patrol, dispatch_review, report
    inspections: list[tuple[datetime, bool]] = field(default_factory=list)  # (at, problem found)

    @property
    def on_time(self) -> bool:
        return bool(
            self.first_feedback_at and self.deadline_at and self.first_feedback_at <= self.deadline_at
        )

    def closed_by(self, end: datetime) -> bool:
        return self.closed_at is not None and self.closed_at < end

    def open_at(self, end: datetime) -> bool:
        """Dispatched before ``end`` and not closed by then."""
        return self.dispatched_at is not None and self.dispatched_at < end and not self.closed_by(end)

    def escalated(self, end: datetime, to_level: int = 2) -> bool:
        """Escalated before ``end`` to ``to_level`` or above (2: escalated at all)."""
        return any(level <= to_level and at < end for level, at in self.escalated_to)

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
            t.kind = p.get("kind") or "alarm"
        at, kind = e["at"], e["type"]
        if e["version"] == 1:
            t.dispatched_at = at
            t.deadline_at = _time(p.get("deadline_at"))
        t.state, t.grid_id, t.level = e["state"], e["grid_id"], e["level"]
        t.current_deadline = _time(p.get("deadline_at"))
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
            t.inspections += [(at, bool(v.get("problem_found"))) for v in findings.get("sources") or ()]
        elif kind == "closed":
            t.closed_at = at
    ordered = sorted(facts.values(), key=lambda f: (f.dispatched_at is None, f.dispatched_at, f.task_id))
    last: dict[str, datetime] = {}
    for f in ordered:
        if f.dispatched_at is None or f.kind != "alarm":
            continue
        prev = last.get(f.station_id)
        f.repeat = prev is not None and f.dispatched_at - prev <= REPEAT_WINDOW
        last[f.station_id] = f.dispatched_at
    return ordered


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _rate(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


Row = Callable[[list[TaskFacts], Period], dict[str, Any]]


def alarm_tasks(facts: Iterable[TaskFacts]) -> list[TaskFacts]:
    return [f for f in facts if f.kind == "alarm"]


def supervision(facts: list[TaskFacts], period: Period) -> dict[str, Any]:
    """Patrols made, patrols due and their completion, source inspections of the period."""
    patrols = [f for f in facts if f.kind == "patrol"]
    due = [f for f in patrols if f.deadline_at is not None and period.contains(f.deadline_at - SECOND)]
    done = sum(f.on_time for f in due)
    seen = [problem for f in facts for at, problem in f.inspections if period.contains(at)]
    return {
        "patrols": sum(1 for f in patrols if period.contains(f.first_feedback_at)),
        "patrols_due": len(due),
        "patrol_completion_rate": _rate(done, len(due)),
        "inspections": len(seen),
        "problems_found": sum(seen),
    }


def weekly_row(every: list[TaskFacts], period: Period) -> dict[str, Any]:
    """Level-3 grids' week: the week's tasks (cohort), and the week's site visits, feedback,
    reminders and closures whatever the task's week; the week's patrols and inspections."""
    mine = alarm_tasks(every)
    cohort = [f for f in mine if period.contains(f.dispatched_at)]
    on_time = sum(f.on_time for f in cohort)
    return {
        "tasks": len(cohort),
        **supervision(every, period),
        "site_visits": sum(1 for f in mine for t in f.patrols if period.contains(t)),
        "feedback": sum(1 for f in mine for t in f.submissions if period.contains(t)),
        "on_time": on_time,
        "on_time_rate": _rate(on_time, len(cohort)),
        "reminders": sum(1 for f in mine for t in f.reminders if period.contains(t)),
        "escalated": sum(f.escalated(period.end) for f in cohort),
        "closed_in_period": sum(1 for f in mine if period.contains(f.closed_at)),
        "open_at_end": sum(f.open_at(period.end) for f in mine),
    }


def monthly_row(every: list[TaskFacts], period: Period) -> dict[str, Any]:
    """Level-2 grids' month: the dispatch summary of the month's tasks."""
    cohort = [f for f in alarm_tasks(every) if period.contains(f.dispatched_at)]
    sev = Counter(f.severity for f in cohort)
    hours = [h for f in cohort if (h := f.feedback_hours()) is not None]
    return {
        "dispatched": len(cohort),
        "critical": sev["critical"],
        "major": sev["major"],
        "minor": sev["minor"] + sev["info"],
        "level3_grids": len({f.l3 for f in cohort}),
        "escalated": sum(f.escalated(period.end) for f in cohort),
        "escalated_to_l1": sum(f.escalated(period.end, 1) for f in cohort),
        "closed": sum(f.closed_by(period.end) for f in cohort),
        "on_time_rate": _rate(sum(f.on_time for f in cohort), len(cohort)),
        "median_feedback_h": round(statistics.median(hours), 1) if hours else None,
    }


def quarterly_row(every: list[TaskFacts], period: Period) -> dict[str, Any]:
    """Level-1 grids' quarter: the bulletin."""
    mine = alarm_tasks(every)
    cohort = [f for f in mine if period.contains(f.dispatched_at)]
    sources = Counter(s for f in cohort for s in f.source_types[:1])
    closed = sum(f.closed_by(period.end) for f in cohort)
    return {
        "tasks": len(cohort),
        "closed": closed,
        "closure_rate": _rate(closed, len(cohort)),
        "on_time_rate": _rate(sum(f.on_time for f in cohort), len(cohort)),
        **supervision(every, period),
        "site_visits": sum(1 for f in mine for t in f.patrols if period.contains(t)),
        "escalated": sum(f.escalated(period.end) for f in cohort),
        "sources_found": sum(f.source_found for f in cohort),
        "top_source": sources.most_common(1)[0][0] if sources else "",
        "stations": len({f.station_id for f in cohort}),
    }


def assessment_row(every: list[TaskFacts], period: Period) -> dict[str, Any]:
    """A level-3 grid's year: the score (formula in the module docstring) and its grade."""
    cohort = [f for f in alarm_tasks(every) if period.contains(f.dispatched_at)]
    n = len(cohort)
    on_time = sum(f.on_time for f in cohort)
    closed = sum(f.closed_by(period.end) for f in cohort)
    escalated = sum(f.escalated(period.end) for f in cohort)
    repeats = sum(f.repeat for f in cohort)
    patrols = supervision(every, period)
    value = with_patrols(score(on_time, closed, escalated, repeats, n), patrols["patrol_completion_rate"])
    return {
        "tasks": n,
        "on_time_rate": _rate(on_time, n),
        "closure_rate": _rate(closed, n),
        "escalated": escalated,
        "repeat_alarms": repeats,
        "patrols_due": patrols["patrols_due"],
        "patrol_completion_rate": patrols["patrol_completion_rate"],
        "inspections": patrols["inspections"],
        "score": value,
        "grade": grade(value),
    }


# report kind -> (row of one grid or of the total, the grid level of its rows)
ROWS: dict[str, tuple[Row, int]] = {
    "weekly": (weekly_row, 3),
    "monthly": (monthly_row, 2),
    "quarterly": (quarterly_row, 1),
    "assessment": (assessment_row, 3),
}
# the headline figures compared with the previous period
CHANGES = {
    "weekly": ("tasks", "on_time_rate"),
    "monthly": ("dispatched", "on_time_rate"),
    "quarterly": ("tasks", "closure_rate"),
    "assessment": ("score",),
}


def _key(level: int) -> str:
    return {3: "l3", 2: "l2", 1: "l1"}[level]


def figures(kind: str, facts: list[TaskFacts], period: Period, grids: list[str]) -> list[dict[str, Any]]:
    """One row per grid of ``grids`` (at the report's level); the assessment best first, ranked."""
    row, level = ROWS[kind]
    by_grid: dict[str, list[TaskFacts]] = defaultdict(list)
    for f in facts:
        by_grid[getattr(f, _key(level))].append(f)
    rows = [{"grid": g, **row(by_grid.get(g, []), period)} for g in grids]
    if kind == "assessment":
        rows.sort(key=lambda r: (r["score"] is None, -float(r["score"] or 0), r["grid"]))
        for rank, r in enumerate(rows, 1):
            r["rank"] = rank if r["score"] is not None else None
    return rows


def total(kind: str, facts: list[TaskFacts], period: Period, grids: list[str] | None) -> dict[str, Any]:
    """The row of all the tasks of ``grids`` together (None: of the whole city)."""
    row, level = ROWS[kind]
    if grids is not None:
        scope = set(grids)
        facts = [f for f in facts if getattr(f, _key(level)) in scope]
    return {"grid": "Total", **row(facts, period)}


def add_changes(kind: str, rows: list[dict[str, Any]], before: list[dict[str, Any]]) -> None:
    """``<figure>_change``: this period's headline figures minus the previous period's, per grid
    (a rate's change in fractions: 0.25 is 25 percentage points); None where either is unknown."""
    previous = {r["grid"]: r for r in before}
    for r in rows:
        old = previous.get(r["grid"], {})
        for col in CHANGES[kind]:
            now, then = r.get(col), old.get(col)
            change = None if now is None or then is None else now - then
            r[f"{col}_change"] = round(change, 4) if isinstance(change, float) else change


def overdue(
    facts: list[TaskFacts], cutoff: datetime, level: int, grids: list[str] | None
) -> list[dict[str, Any]]:
    """Tasks of ``grids`` (None: of the city) overdue at ``cutoff`` (see the module docstring),
    most overdue first."""
    scope = None if grids is None else set(grids)
    late: list[tuple[datetime, TaskFacts]] = [
        (f.current_deadline, f)
        for f in facts
        if (scope is None or getattr(f, _key(level)) in scope)
        and f.open_at(cutoff)
        and f.state in ("dispatched", "acknowledged", "on_site")
        and f.current_deadline is not None
        and f.current_deadline < cutoff
    ]
    late.sort(key=lambda pair: (pair[0], pair[1].task_id))
    return [
        {
            "task_id": f.task_id,
            "station": f.station_id,
            "grid": f.grid_id,
            "level": f.level,
            "state": f.state,
            "severity": f.severity,
            "dispatched_at": f.dispatched_at,
            "deadline_at": deadline,
            "overdue_h": round((cutoff - deadline).total_seconds() / 3600, 1),
        }
        for deadline, f in late
    ]


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


def with_patrols(tasks_score: float | None, completion: float | None) -> float | None:
    """The score with the patrol completion rate's share (module docstring)."""
    if completion is None:
        return tasks_score
    if tasks_score is None:
        return round(100 * completion, 1)
    return round((1 - PATROL_WEIGHT) * tasks_score + 100 * PATROL_WEIGHT * completion, 1)


def grade(value: float | None) -> str:
    if value is None:
        return "-"
    return "A" if value >= 90 else "B" if value >= 75 else "C" if value >= 60 else "D"
