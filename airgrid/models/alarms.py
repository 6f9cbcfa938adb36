"""Alarm episode events on the ``alarms`` topic."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from airgrid.models.common import Message, Pollutant, Severity, StationId, Timestamp
from airgrid.models.readings import Wind

AlarmKind = Literal["opened", "updated", "cleared"]
# why an `updated` was sent, most significant first (docs/topics.md)
AlarmChange = Literal["severity", "category", "period", "worse", "heartbeat"]
AlarmRoute = Literal["grid", "operations"]


class AlarmEvent(Message):
    """One change of an alarm episode of (station, pollutant, rule)."""

    schema_version: Literal[1, 2, 3] = Field(
        3, description="2 adds `change`, 3 adds `wind`; airgrid writes 3 (1, 2: events written before)"
    )
    event_id: str = Field(description="unique and deterministic: replays give the same id")
    alarm_id: str = Field(description="the episode: station, rule, pollutant and opening hour")
    kind: AlarmKind = Field(
        description="opened: the condition started; updated: a material change (see change), or a "
        "heartbeat while the episode lasts; cleared: the condition ended (with hysteresis)"
    )
    change: AlarmChange | None = Field(
        None,
        description="why an `updated` was sent: severity (the rule's severity changed), category (the "
        "AQI category changed), period (another averaging period, e.g. the next calendar day), worse "
        "(a new worst value, above the rules' updates.worse_factor x the worst value sent before), "
        "heartbeat (nothing material for updates.heartbeat_hours of event time); null for opened "
        "and cleared",
    )
    station_id: StationId
    rule_id: str
    pollutant: Pollutant | None
    severity: Severity
    route: AlarmRoute = Field(description="grid workers, or the operations team (data quality)")
    value: float | None = Field(description="value that triggered the event, in the rule's unit")
    threshold: float | None
    period: str = Field(description="averaging period of the value, e.g. 1h")
    aqi: int | None = Field(None, description="real-time (hourly) or daily AQI of the window")
    aqi_standard: str | None = Field(None, description="hj633-2012, hj633-2026 or epa-2024")
    category: str | None = Field(None, description="AQI category, English name (e.g. Heavily polluted)")
    category_level: int | None = Field(None, description="AQI category level, 1..6")
    primary: list[str] = Field(default_factory=list, description="primary indicators, e.g. pm25_24h")
    iaqi: dict[str, int] = Field(default_factory=dict, description="individual AQI per indicator")
    warning_level: str = Field("none", description="heavy-pollution warning level whose rules applied")
    window_start: Timestamp
    window_end: Timestamp
    opened_at: Timestamp = Field(description="event time the episode opened")
    emitted_at: Timestamp = Field(description="wall-clock time airgrid emitted this event")
    reading_observed_at: Timestamp | None = None
    wind: Wind | None = Field(
        None,
        description="wind at the station when the event was decided: the wind of the reading being "
        "folded in when it was emitted (speed m/s, direction it comes FROM, degrees clockwise from "
        "north); null when that reading had none, and for events of no reading (station silent). "
        "Dispatch lists the grids upwind by it",
    )
