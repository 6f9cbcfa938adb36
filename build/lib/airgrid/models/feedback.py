"""Feedback from grid workers on the ``feedback`` topic, and its rejections."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, HttpUrl

from airgrid.models.common import Message, TaskId, Timestamp, WorkerId
from airgrid.models.dlq import Origin

FeedbackAction = Literal["acknowledge", "on_site", "submit", "approve", "reject", "close"]
SourceType = Literal[
    "construction_dust",
    "coal_burning",
    "catering_fumes",
    "vehicle_exhaust",
    "industrial",
    "open_burning",
    "other",
]


class Findings(Message):
    """What the workers found on site."""

    source_found: bool
    source_type: SourceType | None = None
    measures: str = Field("", max_length=4000)
    sources_inspected: int = Field(0, ge=0, le=10_000)
    photos: list[HttpUrl] = Field(default_factory=list, max_length=50)


class Feedback(Message):
    """One action of a grid worker (or a reviewer) on a task."""

    schema_version: Literal[1] = 1
    feedback_id: str = Field(min_length=1, max_length=100, description="unique per action")
    task_id: TaskId
    worker_id: WorkerId
    action: FeedbackAction
    at: Timestamp
    findings: Findings | None = None
    comment: str = Field("", max_length=4000)


class FeedbackRejected(Message):
    """Feedback that was not applied, and why; the task is unchanged."""

    schema_version: Literal[1] = 1
    reason: str
    reason_code: str
    feedback_id: str | None
    task_id: str | None
    origin: Origin | None
    payload: str
    at: Timestamp
