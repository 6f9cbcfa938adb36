"""Feedback from grid workers on the ``feedback`` topic, and its rejections."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, FiniteFloat, HttpUrl, model_validator

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


class SourceVisit(Message):
    """One pollution source inspected on a patrol or an alarm task: the register's input. A
    source is named by its register ``id``, or else by its ``type`` and location."""

    id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:@-]{1,64}$", description="register id, if known")
    type: SourceType
    lon: FiniteFloat | None = Field(None, ge=-180, le=180)
    lat: FiniteFloat | None = Field(None, ge=-90, le=90)
    name: str = Field("", max_length=200)
    problem_found: bool = False
    handled: bool = Field(False, description="the problem was handled on the spot")

    @model_validator(mode="after")
    def _named(self) -> SourceVisit:
        if self.id is None and (self.lon is None or self.lat is None):
            raise ValueError("a source needs its register id, or lon and lat")
        if self.handled and not self.problem_found:
            raise ValueError("handled is true but no problem_found")
        return self

    @property
    def register_id(self) -> str:
        """The register's key: the given id, else type and location (about 10 m)."""
        if self.id is not None:
            return self.id
        return f"{self.type}@{self.lat:.4f},{self.lon:.4f}"


class Findings(Message):
    """What the workers found on site (an alarm task), or on a patrol (the sources visited)."""

    source_found: bool
    source_type: SourceType | None = None
    measures: str = Field("", max_length=4000)
    sources_inspected: int = Field(0, ge=0, le=10_000)
    photos: list[HttpUrl] = Field(default_factory=list, max_length=50)
    sources: list[SourceVisit] = Field(
        default_factory=list, max_length=500, description="the sources visited (the source register)"
    )


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
