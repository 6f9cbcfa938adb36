"""The task state machine: pure, table-driven; every change is a versioned task event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from airgrid.domain.escalation import Policy, build_schedule, shift_after
from airgrid.models.alarms import AlarmEvent
from airgrid.models.feedback import Feedback
from airgrid.models.tasks import (
    DeadlineCommand,
    Lineage,
    Task,
    TaskEvent,
    TaskEventType,
    TaskKind,
    TaskState,
)

# (state, action) -> new state. Anything not here is refused.
TRANSITIONS: dict[tuple[TaskState, str], TaskState] = {
    ("dispatched", "acknowledge"): "acknowledged",
    ("dispatched", "on_site"): "on_site",
    ("acknowledged", "on_site"): "on_site",
    ("acknowledged", "submit"): "feedback_submitted",
    ("on_site", "submit"): "feedback_submitted",
    ("feedback_submitted", "approve"): "closed",
    ("feedback_submitted", "close"): "closed",
    ("feedback_submitted", "reject"): "on_site",
}
EVENT_OF_ACTION: dict[str, TaskEventType] = {
    "acknowledge": "acknowledged",
    "on_site": "on_site",
    "submit": "feedback_submitted",
    "approve": "closed",
    "close": "closed",
    "reject": "feedback_rejected",
}
# Review actions need a reviewer above the level-3 grid (the seed: level-by-level supervision).
REVIEW_ACTIONS = frozenset({"approve", "close", "reject"})
# Deadlines run while the grid owes feedback; they pause while it is under review.
RUNNING_STATES: frozenset[str] = frozenset({"dispatched", "acknowledged", "on_site"})
RECENT_FEEDBACK = 32
# Pollution source type -> departments pulled in (the seed's "department linkage").
DEPARTMENTS: dict[str, tuple[str, ...]] = {
    "construction_dust": ("housing_construction", "urban_management"),
    "coal_burning": ("ecology_environment", "market_regulation"),
    "catering_fumes": ("urban_management", "market_regulation"),
    "vehicle_exhaust": ("public_security_traffic", "transport"),
    "industrial": ("ecology_environment", "industry_information"),
    "open_burning": ("urban_management", "agriculture_rural"),
    "other": ("ecology_environment",),
}


@dataclass(frozen=True)
class Refusal:
    """Why an action was not applied; the task is unchanged."""

    code: str
    reason: str


def task_id_for(alarm: AlarmEvent) -> str:
    """Deterministic: a replayed alarm yields the same task id. Embeds the owner (station)."""
    return f"T-{alarm.station_id}-{alarm.opened_at.strftime('%Y%m%d%H%M')}"


def station_of_task(task_id: str) -> str | None:
    """The owning station of a task id made by :func:`task_id_for`."""
    if not task_id.startswith("T-"):
        return None
    station, sep, stamp = task_id[2:].rpartition("-")
    # an alarm's or a region's task: the opening minute; a supervision task: P, R or Q before it
    digits = stamp[1:] if stamp[:1] in ("P", "R", "Q") else stamp
    return station if sep and station and digits.isdigit() else None


def _event(task: Task, etype: TaskEventType, at: datetime, **extra: Any) -> TaskEvent:
    if task.kind != "alarm":
        extra |= {"kind": task.kind, "period_start": task.period_start, "period_end": task.period_end}
    return TaskEvent(
        event_id=f"{task.task_id}:{task.version}",
        task_id=task.task_id,
        version=task.version,
        type=etype,
        station_id=task.station_id,
        state=task.state,
        severity=task.severity,
        level=task.level,
        grid_id=task.grid_id,
        lineage=task.lineage,
        at=at,
        deadline_at=task.deadline_at,
        **extra,
    )


def _bump(task: Task, now: datetime, **update: Any) -> Task:
    return task.model_copy(update={"version": task.version + 1, "updated_at": now, **update})


def dispatch(
    alarm: AlarmEvent,
    lineage: Lineage,
    policy: Policy,
    now: datetime,
    *,
    co_notified: tuple[str, ...] = (),
    upwind: tuple[str, ...] = (),
    warning: str = "none",
    level: int = 3,
) -> tuple[Task, TaskEvent]:
    """A new task for the station's level-3 grid (``level``: 2 or 1 for a region's task, whose
    ``lineage`` names the region's grid at that level), with its policy and schedule snapshotted.

    ``co_notified``: other level-3 grids told of the task (routing); ``upwind``: those upwind of
    the station, listed first in ``co_notified`` too; ``warning``: the heavy-pollution warning
    level in force, recorded with the policy it chose."""
    deadline, steps = build_schedule(policy, now, level, ack=True)
    upwind = tuple(g for g in dict.fromkeys(upwind) if g != lineage.l3)
    co_notified = tuple(g for g in dict.fromkeys((*upwind, *co_notified)) if g != lineage.l3)
    task = Task(
        task_id=task_id_for(alarm),
        station_id=alarm.station_id,
        state="dispatched",
        version=1,
        severity=alarm.severity,
        lineage=lineage,
        level=level,
        policy=policy.name,
        alarm_ids=(alarm.alarm_id,),
        created_at=now,
        updated_at=now,
        deadline_at=deadline,
        schedule=steps,
        schedule_id=1,
        co_notified=co_notified,
        upwind=upwind,
        warning=warning,
    )
    return task, _event(
        task,
        "dispatched",
        now,
        alarm_id=alarm.alarm_id,
        note=alarm.rule_id,
        co_notified=co_notified,
        upwind=upwind,
    )


def supervise(
    task_id: str,
    grid: str,
    kind: TaskKind,
    lineage: Lineage,
    level: int,
    period: tuple[datetime, datetime],
    policy: Policy,
    severity: str,
    now: datetime,
) -> tuple[Task, TaskEvent]:
    """A scheduled supervision task of ``grid`` for ``period``: due at the period's end, with
    the policy's reminders before it and escalation after it (from the grid's own level)."""
    start, end = period
    due_in = max(60.0, (end - now).total_seconds())
    deadline, steps = build_schedule(
        policy.model_copy(update={"feedback_deadline_s": due_in}), now, level, ack=True
    )
    task = Task(
        task_id=task_id,
        station_id=grid,
        state="dispatched",
        version=1,
        severity=severity,  # type: ignore[arg-type]
        lineage=lineage,
        level=level,  # type: ignore[arg-type]
        policy=policy.name,
        alarm_ids=(),
        created_at=now,
        updated_at=now,
        deadline_at=deadline,
        schedule=steps,
        schedule_id=1,
        kind=kind,
        period_start=start,
        period_end=end,
    )
    return task, _event(task, "dispatched", now, note=f"{kind} {start.date().isoformat()}")


def join(task: Task, alarm: AlarmEvent, now: datetime) -> tuple[Task, list[TaskEvent]]:
    """A repeat alarm while the task is open joins it (no new task); a known alarm is a no-op."""
    if alarm.alarm_id in task.alarm_ids:
        return task, []
    new = _bump(task, now, alarm_ids=(*task.alarm_ids, alarm.alarm_id))
    return new, [_event(new, "alarm_joined", now, alarm_id=alarm.alarm_id, note=alarm.rule_id)]


def live_step(task: Task) -> int:
    """Index of the next step that still applies: the acknowledgement reminder is passed over
    once the task left ``dispatched`` (no event: skipping it changes nothing visible)."""
    i = task.next_step
    while i < len(task.schedule) and task.schedule[i].only_unacknowledged and task.state != "dispatched":
        i += 1
    return i


def apply_deadline(task: Task, cmd: DeadlineCommand, now: datetime) -> tuple[Task, list[TaskEvent]]:
    """Apply a sweeper's command once: stale ones (other schedule, step done, paused) do nothing."""
    if (
        cmd.schedule_id != task.schedule_id
        or cmd.step != live_step(task)
        or task.state not in RUNNING_STATES
        or cmd.step >= len(task.schedule)
    ):
        return task, []
    step = task.schedule[cmd.step]
    if step.at > now:  # clock skew between workers: not due yet here
        return task, []
    schedule = shift_after(task.schedule, cmd.step, now - step.at)
    if step.action == "remind":
        new = _bump(task, now, next_step=cmd.step + 1, schedule=schedule, reminders=task.reminders + 1)
        return new, [_event(new, "reminded", now, note=step.reason)]
    new = _bump(
        task,
        now,
        next_step=cmd.step + 1,
        schedule=schedule,
        level=step.level,
        escalations=task.escalations + 1,
    )
    return new, [_event(new, "escalated", now, note=step.reason)]


def authorise(task: Task, action: str, worker_grid_level: int, worker_grid: str) -> Refusal | None:
    """A worker may act only on tasks of its own grid or of grids below it (its grid is in the
    task's chain); review actions need a grid above level 3."""
    return authorise_in(task.lineage, action, worker_grid_level, worker_grid)


def authorise_in(lineage: Lineage, action: str, worker_grid_level: int, worker_grid: str) -> Refusal | None:
    """:func:`authorise` for a task of grid chain ``lineage`` (``airgrid feedback send`` checks
    before it sends)."""
    chain = {3: lineage.l3, 2: lineage.l2, 1: lineage.l1}
    if chain.get(worker_grid_level) != worker_grid:
        return Refusal(
            "wrong_grid",
            f"worker's grid {worker_grid} is not in the task's grid chain "
            f"{lineage.l3} > {lineage.l2} > {lineage.l1}",
        )
    if action in REVIEW_ACTIONS and worker_grid_level == 3:
        return Refusal(
            "not_reviewer",
            f"{action} needs a reviewer of grid {lineage.l2} or {lineage.l1}, "
            f"not of level-3 grid {worker_grid}",
        )
    return None


def apply_feedback(
    task: Task, fb: Feedback, policy: Policy, now: datetime
) -> tuple[Task, list[TaskEvent]] | Refusal:
    """Apply one feedback action (rights already checked); a replayed feedback id is a no-op."""
    if fb.feedback_id in task.applied_feedback:
        return task, []
    target = TRANSITIONS.get((task.state, fb.action))
    if target is None:
        allowed = sorted(a for (s, a) in TRANSITIONS if s == task.state) or ["none: it is closed"]
        return Refusal(
            "illegal_transition",
            f"cannot {fb.action} a task that is {task.state}; allowed: {', '.join(allowed)}",
        )
    recent = (*task.applied_feedback, fb.feedback_id)[-RECENT_FEEDBACK:]
    update: dict[str, Any] = {"state": target, "applied_feedback": recent}
    if fb.action == "reject":
        # back on site with a fresh deadline at the level now responsible
        deadline, steps = build_schedule(policy, now, task.level)
        update |= {
            "deadline_at": deadline,
            "schedule": steps,
            "schedule_id": task.schedule_id + 1,
            "next_step": 0,
        }
    new = _bump(task, now, **update)
    extra: dict[str, Any] = {"worker_id": fb.worker_id, "feedback_id": fb.feedback_id}
    if fb.findings is not None:
        extra["findings"] = fb.findings
    events = [_event(new, EVENT_OF_ACTION[fb.action], now, note=fb.comment, **extra)]
    if fb.action == "submit" and fb.findings and fb.findings.source_type:
        departments = DEPARTMENTS.get(fb.findings.source_type, ())
        new = _bump(new, now)
        events.append(
            _event(
                new,
                "departments_notified",
                now,
                departments=departments,
                feedback_id=fb.feedback_id,
                note=f"source type {fb.findings.source_type}",
            )
        )
    return new, events


def next_due_at(task: Task) -> datetime | None:
    """When ``due_command`` first returns a command for the task as it is (None: never)."""
    index = live_step(task)
    if task.state not in RUNNING_STATES or index >= len(task.schedule):
        return None
    return task.schedule[index].at


def due_command(task: Task, now: datetime) -> DeadlineCommand | None:
    """What a sweeper should emit for this task now, if anything (pure; the owner re-checks)."""
    at = next_due_at(task)
    if at is None or at > now:
        return None
    index = live_step(task)
    step = task.schedule[index]
    return DeadlineCommand(
        task_id=task.task_id,
        station_id=task.station_id,
        schedule_id=task.schedule_id,
        step=index,
        due_at=step.at,
        issued_at=now,
    )
