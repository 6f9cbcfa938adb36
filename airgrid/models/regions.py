"""The regional background: the region stage's input (``region-inputs``) and output (``regions``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from airgrid.models.alarms import AlarmEvent
from airgrid.models.common import GridId, GridLevel, Message, Pollutant, StationId, Timestamp

DispatchAction = Literal["level3", "region", "suppressed"]


class StationHour(Message):
    """A station's valid hourly values of one closed hour, re-keyed to the station's region."""

    kind: Literal["hour"] = "hour"
    region: GridId
    station_id: StationId
    hour: int = Field(description="hour number: epoch seconds // 3600 of the hour's start")
    values: dict[Pollutant, float]


class RegionAlarm(Message):
    """An opened grid alarm of a station, re-keyed to its region, which decides its dispatch."""

    kind: Literal["alarm"] = "alarm"
    region: GridId
    hour: int = Field(description="the hour whose evaluation opened the alarm")
    alarm: AlarmEvent


class RegionTick(Message):
    """The region sweep's nudge (a timer may not write a table): complete the hours that waited
    too long by the wall clock."""

    kind: Literal["tick"] = "tick"
    region: GridId
    at: Timestamp


class RegionHour(Message):
    """One closed hour of a region, on ``regions`` (keyed by region): the background of each
    pollutant, whether a regional episode holds, and the stations in local excess."""

    kind: Literal["hour"] = "hour"
    schema_version: Literal[1] = 1
    region: GridId
    level: GridLevel
    hour_start: Timestamp
    hour_end: Timestamp
    stations: int = Field(description="stations of the region in the grid directory")
    reporting: int = Field(description="stations with at least one valid hourly value")
    statistic: str = Field(description="median or trimmed_mean")
    background: dict[Pollutant, float] = Field(
        description="per pollutant, when at least regional.min_stations stations have a valid value"
    )
    counts: dict[Pollutant, int] = Field(description="valid values per pollutant")
    share_above: float | None = Field(
        None, description="share of reporting stations above the episode limit (None: too few stations)"
    )
    episode: bool = Field(description="a regional episode holds after this hour")
    episode_since: Timestamp | None = None
    local_excess: list[StationId] = Field(
        default_factory=list, description="stations whose local-excess condition holds this hour"
    )
    emitted_at: Timestamp


class DispatchDecision(Message):
    """What the region stage decided for one opened grid alarm, on ``regions`` (keyed by region):
    ``level3`` (a task for the station's level-3 grid, as without the regional logic), ``region``
    (during a regional episode: joins the one task of the region's grid), ``suppressed`` (during a
    regional episode with dispatch = "none": no task; subscribers still have the alarm)."""

    kind: Literal["dispatch"] = "dispatch"
    schema_version: Literal[1] = 1
    region: GridId
    alarm_id: str
    station_id: StationId
    rule_id: str
    hour: int = Field(description="the hour the alarm belongs to: epoch seconds // 3600 of its start")
    hour_start: Timestamp = Field(description="the same hour's start")
    action: DispatchAction
    episode: bool
    emitted_at: Timestamp


class RegionTask(Message):
    """The region's own task during a regional episode: the grid it goes to and the episode's
    alarm (``station_id`` = the region) that names it."""

    grid: GridId
    level: GridLevel
    parent: GridId | None = Field(None, description="the level-1 grid above a level-2 region")
    episode: AlarmEvent


class DispatchCommand(Message):
    """The region stage's dispatch, applied by the owner of ``station_id`` (a station, or the
    region for the region's task): dispatch ``alarm`` to the station's level-3 grid, or, with
    ``region``, join it to the region's task (dispatched first if none is open)."""

    kind: Literal["dispatch"] = "dispatch"
    station_id: StationId
    alarm: AlarmEvent
    region: RegionTask | None = None
