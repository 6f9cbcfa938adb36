"""Alarm episode events on the ``alarms`` topic."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from airgrid.models.common import Message, Pollutant, Severity, StationId, Timestamp

AlarmKind = Literal["opened", "updated", "cleared"]
AlarmRoute = Literal["grid", "operations"]


class AlarmEvent(Message):
    """One change of an alarm episode of (station, pollutant, rule)."""

    schema_version: Literal[1] = 1
    event_id: str = Field(description="unique and deterministic: replays give the same id")
    alarm_id: str = Field(description="the episode: station, rule, pollutant and opening hour")
    kind: AlarmKind
    station_id: StationId
    rule_id: str
    pollutant: Pollutant | None
    severity: Severity
    route: AlarmRoute = Field(description="grid workers, or the operations team (data quality)")
    value: float | None = Field(description="value that triggered the event, in the rule's unit")
    threshold: float | None
    period: str = Field(description="averaging period of the value, e.g. 1h")
    aqi: int | None = None
    window_start: Timestamp
    window_end: Timestamp
    opened_at: Timestamp = Field(description="event time the episode opened")
    emitted_at: Timestamp = Field(description="wall-clock time airgrid emitted this event")
    reading_observed_at: Timestamp | None = None
