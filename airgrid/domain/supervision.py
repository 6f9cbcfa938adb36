"""Scheduled supervision (the seed's cadence): level-3 grids patrol weekly, level-2 grids review
their dispatch monthly, level-1 grids report quarterly; key grids may patrol more often.

Pure: the duties come from the policy file (``[supervision.<kind>]``), periods are computed in
the city's time zone from an injected ``now``. A supervision task is named by its grid, its kind
and its period (``T-<grid>-<P|R|Q><period start, UTC YYYYMMDDHHMMSS>``), so the scheduler may ask
for it any number of times and the owner creates it once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

from airgrid.domain.directory import Directory
from airgrid.models.tasks import Lineage, TaskKind

Every = Literal["day", "week", "month", "quarter"]
LETTER: dict[str, str] = {"patrol": "P", "dispatch_review": "R", "report": "Q"}
LEVEL: dict[str, int] = {"patrol": 3, "dispatch_review": 2, "report": 1}


class Duty(BaseModel):
    """One supervision duty: which grids, how often, under which deadline policy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    every: Every | None = Field(
        None, description="the period, in the city's calendar (week unless every_s is given)"
    )
    every_s: float | None = Field(
        None, gt=0, description="a fixed period in seconds instead (tests, demonstrations)"
    )
    key_grid_times: int = Field(
        1, ge=1, le=7, description="key grids: this many tasks per period, each in an equal part of it"
    )
    policy: str | None = Field(
        None, description="reminders and escalation (the deadline is always the period's end)"
    )
    severity: Literal["info", "minor", "major", "critical"] = "minor"

    @model_validator(mode="before")
    @classmethod
    def _week_by_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("every") is None and data.get("every_s") is None:
            return {**data, "every": "week"}
        return data

    @model_validator(mode="after")
    def _one_period(self) -> Duty:
        if (self.every is None) == (self.every_s is None):
            raise ValueError("give exactly one of every (day, week, month, quarter) or every_s")
        return self


class Supervision(BaseModel):
    """``[supervision]`` of the policy file: the duties that are on (absent: none)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    patrol: Duty | None = None
    dispatch_review: Duty | None = None
    report: Duty | None = None
    burst: int = Field(
        200, ge=1, le=100_000, description="at most this many tasks asked for per scheduler pass"
    )

    def duties(self) -> Iterator[tuple[TaskKind, Duty]]:
        for kind in ("patrol", "dispatch_review", "report"):
            duty = getattr(self, kind)
            if duty is not None:
                yield kind, duty  # type: ignore[misc]


@dataclass(frozen=True)
class Slot:
    """One task a grid owes: its duty and its period."""

    grid: str
    kind: TaskKind
    start: datetime
    end: datetime

    @property
    def task_id(self) -> str:
        return supervision_task_id(self.grid, self.kind, self.start)


def _local_midnight(t: datetime, zone: ZoneInfo) -> datetime:
    local = t.astimezone(zone)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def period_of(duty: Duty, now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The period of ``duty`` that contains ``now``: [start, end), aware, in ``zone``."""
    if duty.every_s is not None:
        n = int(now.timestamp() // duty.every_s)
        return (
            datetime.fromtimestamp(n * duty.every_s, UTC).astimezone(zone),
            datetime.fromtimestamp((n + 1) * duty.every_s, UTC).astimezone(zone),
        )
    day = _local_midnight(now, zone)
    if duty.every == "day":
        start = day
        end = start + timedelta(days=1)
    elif duty.every == "week":  # ISO week: Monday to Sunday
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:
        months = 1 if duty.every == "month" else 3
        first = (day.month - 1) // months * months + 1
        start = day.replace(month=first, day=1)
        year, month = divmod(first - 1 + months, 12)
        end = start.replace(year=start.year + year, month=month + 1)
    return start, end  # wall-clock arithmetic in the zone: a period starts at local midnight


def slot_of(grid: str, kind: TaskKind, duty: Duty, key: bool, now: datetime, zone: ZoneInfo) -> Slot:
    """The task ``grid`` owes now: the period, or for a key grid its part of the period."""
    start, end = period_of(duty, now, zone)
    times = duty.key_grid_times if key else 1
    if times > 1:
        step = (end - start) / times
        part = min(times - 1, int((now - start) / step))
        start, end = start + step * part, start + step * (part + 1)
    return Slot(grid, kind, start, end)


def supervision_task_id(grid: str, kind: str, start: datetime) -> str:
    """The period's start in UTC, so every worker names it alike whatever its zone."""
    return f"T-{grid}-{LETTER[kind]}{start.astimezone(UTC).strftime('%Y%m%d%H%M%S')}"


def lineage_of_grid(directory: Directory, grid: str) -> Lineage:
    """The chain of a grid at any level; a level-2 or level-1 grid stands for the levels below
    it (only its own level's workers and those above act on its tasks)."""
    g = directory.grids[grid]
    if g.level == 3:
        return directory.lineage_of_grid(grid)
    if g.level == 2:
        return Lineage(l3=grid, l2=grid, l1=g.parent or grid)
    return Lineage(l3=grid, l2=grid, l1=grid)


def slots(
    directory: Directory, sup: Supervision, now: datetime, zone: ZoneInfo
) -> Iterator[tuple[Slot, Duty]]:
    """Every task the directory's grids owe now, by duty."""
    for kind, duty in sup.duties():
        level = LEVEL[kind]
        for g in directory.grids.values():
            if g.level == level:
                yield slot_of(g.id, kind, duty, g.key, now, zone), duty
