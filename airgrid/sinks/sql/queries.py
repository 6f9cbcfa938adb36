"""Reads of the projection for the operator CLI, reports and tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Engine

from airgrid.domain.tasks import RUNNING_STATES
from airgrid.sinks.sql.schema import dead_letters, feedback, source_inspections, sources, task_events, tasks


def list_tasks(
    engine: Engine,
    *,
    grid: str | None = None,
    state: str | None = None,
    escalated: bool = False,
    overdue_at: datetime | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    kind: str | None = None,
) -> list[dict[str, Any]]:
    """Tasks in creation order; ``kind``: alarm, or a supervision duty (patrol, ...); ``grid``
    matches a grid at any level of the task's chain; ``escalated``: tasks now at level 2 or 1;
    ``overdue_at``: tasks overdue at that time (open, feedback not submitted, deadline passed: the
    reports' meaning); ``since``/``until`` bound the creation time (until exclusive)."""
    q = select(tasks).order_by(tasks.c.created_at, tasks.c.task_id)
    if grid:
        q = q.where(or_(tasks.c.grid_l3 == grid, tasks.c.grid_l2 == grid, tasks.c.grid_l1 == grid))
    if state:
        q = q.where(tasks.c.state == state)
    if escalated:
        q = q.where(tasks.c.level < 3)
    if overdue_at is not None:
        q = q.where(tasks.c.state.in_(sorted(RUNNING_STATES)), tasks.c.deadline_at < overdue_at)
    if since:
        q = q.where(tasks.c.created_at >= since)
    if until:
        q = q.where(tasks.c.created_at < until)
    if kind:
        q = q.where(tasks.c.kind == kind)
    if limit:
        q = q.limit(limit)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def get_task(engine: Engine, task_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(tasks).where(tasks.c.task_id == task_id)).first()
        return dict(row._mapping) if row else None


def task_history(engine: Engine, task_id: str) -> list[dict[str, Any]]:
    """The task's events in version order, each with the feedback action that caused it."""
    q = (
        select(task_events, feedback.c.action.label("feedback_action"))
        .outerjoin(feedback, feedback.c.feedback_id == task_events.c.feedback_id)
        .where(task_events.c.task_id == task_id)
        .order_by(task_events.c.version)
    )
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def iter_tasks(engine: Engine, state: str | None = None) -> list[dict[str, Any]]:
    return list_tasks(engine, state=state)


def dlq_counts(
    engine: Engine, since_day: str | None = None, until_day: str | None = None
) -> list[dict[str, Any]]:
    """Dead letters and rejected feedback counted by local day, topic and reason code."""
    n = func.count().label("count")
    q = select(dead_letters.c.day, dead_letters.c.topic, dead_letters.c.reason_code, n).group_by(
        dead_letters.c.day, dead_letters.c.topic, dead_letters.c.reason_code
    )
    if since_day:
        q = q.where(dead_letters.c.day >= since_day)
    if until_day:
        q = q.where(dead_letters.c.day < until_day)
    q = q.order_by(dead_letters.c.day, dead_letters.c.topic, dead_letters.c.reason_code)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def table_counts(engine: Engine) -> dict[str, int]:
    """Rows per projection table (replay checks, ``airgrid db status``)."""
    out: dict[str, int] = {}
    with engine.connect() as conn:
        for t in (tasks, task_events, feedback, dead_letters, sources, source_inspections):
            out[t.name] = int(conn.scalar(select(func.count()).select_from(t)) or 0)
        from airgrid.sinks.sql.schema import alarms

        out["alarms"] = int(conn.scalar(select(func.count()).select_from(alarms)) or 0)
    return out


def list_sources(
    engine: Engine,
    *,
    grids: list[str] | None = None,
    type_: str | None = None,
    problems: bool = False,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """The pollution-source register, most repeat offences first; ``grids``: of these level-3
    grids; ``problems``: sources where a problem was ever found."""
    q = select(sources).order_by(
        sources.c.repeat_offences.desc(), sources.c.problems.desc(), sources.c.source_id
    )
    if grids is not None:
        q = q.where(sources.c.grid_id.in_(grids))
    if type_:
        q = q.where(sources.c.type == type_)
    if problems:
        q = q.where(sources.c.problems > 0)
    if limit:
        q = q.limit(limit)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def source_history(engine: Engine, source_id: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """A source's register row and its inspections, oldest first."""
    with engine.connect() as conn:
        row = conn.execute(select(sources).where(sources.c.source_id == source_id)).first()
        seen = conn.execute(
            select(source_inspections)
            .where(source_inspections.c.source_id == source_id)
            .order_by(source_inspections.c.at, source_inspections.c.feedback_id)
        )
        return (dict(row._mapping) if row else None), [dict(r._mapping) for r in seen]
