"""Assemble a report: the period, the grids in scope (from the grid directory), the figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from airgrid.domain.directory import Directory
from airgrid.domain.supervision import LEVEL as DUTY_LEVEL
from airgrid.reports import compute
from airgrid.reports.periods import Period
from airgrid.sinks.sql.queries import dlq_counts
from airgrid.sinks.sql.schema import task_events

LEVEL = {kind: level for kind, (_, level) in compute.ROWS.items()}
TITLES = {
    "weekly": "Weekly patrol report per level-3 grid",
    "monthly": "Monthly dispatch summary per level-2 grid",
    "quarterly": "Quarterly bulletin per level-1 grid",
    "assessment": "Yearly grid assessment (level-3 grids)",
}
# (title, value column, fixed scale maximum or None for the largest value) of the HTML charts
CHARTS: dict[str, list[tuple[str, str, float | None]]] = {
    "weekly": [("Tasks dispatched", "tasks", None), ("Patrols", "patrols", None)],
    "monthly": [("Tasks dispatched", "dispatched", None), ("Escalated tasks", "escalated", None)],
    "quarterly": [("Tasks", "tasks", None), ("Closure rate", "closure_rate", 1.0)],
    "assessment": [("Score (0-100)", "score", 100.0), ("On-time feedback rate", "on_time_rate", 1.0)],
}


class GridError(ValueError):
    """The --grid does not exist, or is at a level the report cannot use."""


@dataclass
class Report:
    kind: str
    title: str
    period: Period
    city: str
    scope: str
    rows: list[dict[str, Any]]
    charts: list[tuple[str, str, float | None]]
    total: dict[str, Any] | None = None  # the row of every grid in scope together
    previous: Period | None = None  # the period the changes are against
    cutoff: datetime | None = None  # when the overdue tasks were overdue
    overdue: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: list[dict[str, Any]] = field(default_factory=list)  # quarterly: data quality


def grids_in_scope(directory: Directory, level: int, grid: str | None) -> list[str] | None:
    """Grids of ``level`` under ``grid`` (itself if at that level); None: every grid with activity."""
    if grid is None:
        return None
    g = directory.grids.get(grid)
    if g is None:
        raise GridError(f"--grid: no grid {grid!r} in the grid directory")
    if g.level > level:
        raise GridError(f"--grid {grid} is a level-{g.level} grid; this report is per level-{level} grid")
    frontier = {grid}
    for _ in range(level - g.level):  # walk down to the report's level
        frontier = {c.id for c in directory.grids.values() if c.parent in frontier}
    return sorted(frontier)


def load_events(engine: Engine, period: Period) -> list[dict[str, Any]]:
    """Every task event before the period's end (repeats look back 30 days before its start)."""
    q = select(task_events).where(task_events.c.at < period.end)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def build(
    kind: str,
    period: Period,
    directory: Directory,
    engine: Engine,
    grid: str | None,
    now: datetime | None = None,
) -> Report:
    """The report of ``period``; ``now`` (the clock) cuts the overdue list off while the period
    runs (None: at the period's end)."""
    level = LEVEL[kind]
    scope = grids_in_scope(directory, level, grid)
    events = load_events(engine, period)
    facts = compute.fold(events)
    if scope is None:
        key = {3: "l3", 2: "l2", 1: "l1"}[level]
        active = {
            getattr(f, key)
            for f in facts
            if (f.kind == "alarm" or DUTY_LEVEL.get(f.kind) == level)
            and (
                period.contains(f.dispatched_at)
                or any(period.contains(t) for t in (*f.patrols, *f.submissions, f.closed_at))
            )
        }
        # a region's task or a level-2/level-1 grid's own task names that grid at the levels below
        # it too (lineage l3 = l2 = the grid): it is no row of a level-3 report
        scope = sorted(g for g in active if directory.level_of_grid(g) in (level, None))
    rows = compute.figures(kind, facts, period, scope)
    previous = period.previous()
    # as that period's report showed them: the same events, up to its end (read once)
    before = compute.fold(e for e in events if e["at"] < previous.end)
    compute.add_changes(kind, rows, compute.figures(kind, before, previous, scope))
    for r in rows:
        g = directory.grids.get(r["grid"])
        r["name"] = g.name if g else "(not in the directory)"
    where = f"grid {grid} ({directory.grids[grid].name})" if grid else "whole city"
    # the whole city's total when no grid is given, whatever grids were active in either period
    city = None if grid is None else scope
    total = compute.total(kind, facts, period, city)
    compute.add_changes(kind, [total], [compute.total(kind, before, previous, city)])
    total["name"] = where
    cutoff = period.end if now is None else min(period.end, now)
    report = Report(
        kind,
        TITLES[kind],
        period,
        directory.city,
        where,
        rows,
        CHARTS[kind],
        total=total if rows else None,
        previous=previous,
        cutoff=cutoff,
        overdue=compute.overdue(facts, cutoff, level, city),
    )
    report.notes.append(
        "On time: first feedback at or before the deadline the task was dispatched with. "
        "Tasks count in the period they were dispatched in; escalated: those escalated (to level 2 "
        "or on to level 1) before the period's end. Figures are as of the end of the period."
    )
    report.notes.append(
        f"Changes are against {previous.label}, as its report showed them; rate changes in "
        "percentage points (pp)."
    )
    if kind == "assessment":
        report.notes.append(
            "score = 100 x (0.40 on-time rate + 0.30 closure rate + 0.15 (1 - escalation rate) "
            "+ 0.15 (1 - repeat-alarm rate)); with patrols due, 0.85 x that + 15 x patrol completion "
            "rate; see docs/reports.md"
        )
    if kind == "quarterly":
        report.extra = dlq_counts(engine, period.first_day.isoformat(), period.end_day.isoformat())
    return report
