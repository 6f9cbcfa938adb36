"""Tasks: the state kept per task in the owner's table, and the public ``task-events``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from airgrid.models.common import (
    GridId,
    GridLevel,
    Message,
    Severity,
    StationId,
    TaskId,
    Timestamp,
    WorkerId,
)
from airgrid.models.feedback import Feedback, Findings

TaskState = Literal["dispatched", "acknowledged", "on_site", "feedback_submitted", "closed"]
OPEN_STATES: frozenset[str] = frozenset({"dispatched", "acknowledged", "on_site", "feedback_submitted"})
TaskEventType = Literal[
    "dispatched",
    "alarm_joined",
    "reminded",
    "escalated",
    "acknowledged",
    "on_site",
    "feedback_submitted",
    "departments_notified",
    "feedback_rejected",
    "closed",
]
StepAction = Literal["remind", "escalate"]
# what a task is for: an alarm (dispatched by detection) or a scheduled supervision duty
# (issue 17: level-3 grids patrol weekly, level-2 grids review dispatch monthly, level-1 grids
# report quarterly; policy.toml [supervision])
TaskKind = Literal["alarm", "patrol", "dispatch_review", "report"]
SUPERVISION_KINDS: tuple[TaskKind, ...] = ("patrol", "dispatch_review", "report")


class Lineage(Message):
    """The grid chain of the station, snapshotted at dispatch: level-3, its level-2, its level-1."""

    l3: GridId
    l2: GridId
    l1: GridId
    key_grid: bool = False

    def at(self, level: int) -> GridId:
        return {3: self.l3, 2: self.l2, 1: self.l1}[level]


class Step(Message):
    """One scheduled deadline action."""

    at: Timestamp
    action: StepAction
    level: GridLevel = Field(description="grid level responsible after this step")
    reason: str
    only_unacknowledged: bool = Field(
        False, description="skipped once the task is acknowledged (the acknowledgement reminder)"
    )


class Task(Message):
    """A task as its owner partition keeps it (one per open episode group of a station)."""

    schema_version: Literal[1] = 1
    task_id: TaskId
    station_id: StationId
    state: TaskState
    version: int = Field(ge=1)
    severity: Severity
    lineage: Lineage
    level: GridLevel = Field(3, description="level currently responsible (3, escalated to 2, 1)")
    policy: str
    alarm_ids: tuple[str, ...]
    created_at: Timestamp
    updated_at: Timestamp
    deadline_at: Timestamp | None
    schedule: tuple[Step, ...] = ()
    schedule_id: int = 0
    next_step: int = 0
    reminders: int = 0
    escalations: int = 0
    applied_feedback: tuple[str, ...] = Field(
        (), description="recent feedback ids, so a replayed feedback is recognised"
    )
    co_notified: tuple[GridId, ...] = Field(
        (), description="other level-3 grids told of the task at dispatch (routing)"
    )
    upwind: tuple[GridId, ...] = Field(
        (), description="those of co_notified that were upwind of the station at dispatch"
    )
    warning: str = Field("none", description="heavy-pollution warning level in force at dispatch")
    outbox: tuple[str, ...] = Field(
        (), description="events of this version not yet known to be published (JSON); see the owner"
    )
    kind: TaskKind = Field("alarm", description="an alarm's task, or a scheduled supervision duty")
    period_start: Timestamp | None = Field(None, description="a supervision task: its period")
    period_end: Timestamp | None = None

    @property
    def grid_id(self) -> GridId:
        return self.lineage.at(self.level)

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


class TaskEvent(Message):
    """One change of a task; ``version`` strictly increases per task."""

    schema_version: Literal[1, 2] = Field(
        2, description="2 adds `upwind`; airgrid writes 2 (1: events written before it)"
    )
    event_id: str = Field(description="task_id:version, unique and stable under replay")
    task_id: TaskId
    version: int = Field(ge=1)
    type: TaskEventType
    station_id: StationId
    state: TaskState
    severity: Severity
    level: GridLevel
    grid_id: GridId = Field(description="the grid responsible after this event")
    lineage: Lineage
    at: Timestamp
    deadline_at: Timestamp | None
    alarm_id: str | None = None
    worker_id: WorkerId | None = None
    feedback_id: str | None = None
    findings: Findings | None = None
    departments: tuple[str, ...] = ()
    co_notified: tuple[GridId, ...] = Field(
        (),
        description="on dispatched: other level-3 grids told of the task: those upwind of the "
        "station first (as in upwind), then those within the co-notification radius, nearest first "
        "in each part, each grid once, never the task's own",
    )
    upwind: tuple[GridId, ...] = Field(
        (),
        description="on dispatched: the level-3 grids upwind of the station (centre within "
        "AIRGRID_UPWIND_RADIUS_KM, bearing within AIRGRID_UPWIND_SECTOR_DEGREES around the direction "
        "the alarm's wind comes from), nearest first; all of them are in co_notified too. Empty "
        "without a wind, in a calm or when upwind co-notification is off",
    )
    note: str = ""
    kind: TaskKind = Field(
        "alarm",
        description="alarm: a task dispatched for alarms (station_id: the station); patrol, "
        "dispatch_review, report: a scheduled supervision task of the grid station_id names",
    )
    period_start: Timestamp | None = Field(None, description="a supervision task: the period it covers")
    period_end: Timestamp | None = None


class DeadlineCommand(Message):
    """Emitted by a sweeper, applied by the owner; stale commands are ignored."""

    kind: Literal["deadline"] = "deadline"
    task_id: TaskId
    station_id: StationId
    schedule_id: int
    step: int
    due_at: Timestamp
    issued_at: Timestamp


class OutboxCommand(Message):
    """Emitted by a sweeper for a task whose last events may not have been published (a crash
    between storing the task and sending them); the owner re-sends them, byte for byte."""

    kind: Literal["outbox"] = "outbox"
    task_id: TaskId
    station_id: StationId
    version: int
    issued_at: Timestamp


class SuperviseCommand(Message):
    """Emitted by the supervision scheduler (a timer), applied by the owner of the grid: create
    the grid's supervision task of the period, unless it exists (exactly once per grid and period)."""

    kind: Literal["supervise"] = "supervise"
    station_id: StationId = Field(description="the grid, the owner's key")
    duty: TaskKind
    period_start: Timestamp
    period_end: Timestamp
    issued_at: Timestamp


class FeedbackCommand(Message):
    """Feedback re-keyed to the partition that owns the task."""

    kind: Literal["feedback"] = "feedback"
    station_id: StationId
    feedback: Feedback
    origin_topic: str
    origin_partition: int
    origin_offset: int
    received_at: Timestamp
