"""Alarm episodes: open once per (station, rule, pollutant), update while the condition lasts, clear
after ``clear_hours`` consecutive calm evaluations (hysteresis: between the clear level and the
threshold the calm count restarts)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from airgrid.domain.detection.compiled import Rule, RuleSet
from airgrid.domain.detection.hour import HOUR, HourView, aqi_fields, daily_result, standard_of
from airgrid.domain.detection.state import Episode, StationState
from airgrid.models.alarms import AlarmEvent, AlarmKind
from airgrid.models.common import trusted


@lru_cache(maxsize=8192)
def _dt(ts: float) -> datetime:
    """Aware datetime of an epoch second; memoised: an hour's window and opening repeat for
    every rule and station that fires in it (datetimes are immutable, sharing is safe)."""
    return datetime.fromtimestamp(ts, UTC)


class Emitter:
    """Collects the events of one call; ``window``/``view``/``day`` describe what is evaluated."""

    __slots__ = (
        "_fields",
        "day",
        "events",
        "now_ts",
        "reading_ts",
        "rules",
        "state",
        "station",
        "view",
        "window",
    )

    def __init__(
        self, state: StationState, station: str, rules: RuleSet, now_ts: float, reading_ts: float | None
    ) -> None:
        self.state = state
        self.station = station
        self.rules = rules
        self.now_ts = now_ts
        self.reading_ts = reading_ts
        self.events: list[AlarmEvent] = []
        self.window: tuple[float, float] = (0.0, 0.0)
        self.view: HourView | None = None
        self.day: int | None = None
        self._fields: tuple[Any, dict[str, Any]] | None = None

    def step(
        self,
        rule: Rule,
        key: str,
        cond: bool,
        calm: bool,
        value: float,
        threshold: float | None,
        *,
        pollutant: str | None = None,
        revision: bool = False,
        opened: float | None = None,
    ) -> None:
        episodes = self.state.episodes
        ep = episodes.get(key)
        kind: AlarmKind
        if cond:
            if ep is None:
                start = self.window[0] if opened is None else opened
                stamp = _dt(start).strftime("%Y%m%dT%H%MZ")
                ep = episodes[key] = Episode(alarm_id=f"{self.station}:{key}:{stamp}", opened_at=start)
                kind = "opened"
            else:
                kind = "updated"
            ep.calm = 0
            ep.peak = max(ep.peak, value)
        elif ep is None or revision:
            return
        elif calm:
            ep.calm += 1
            if ep.calm < rule.clear_hours:
                return
            del episodes[key]
            kind = "cleared"
        else:
            ep.calm = 0
            return
        ep.seq += 1
        self.events.append(self._event(rule, ep, kind, value, threshold, pollutant or rule.pollutant or None))

    def _event(
        self, rule: Rule, ep: Episode, kind: AlarmKind, value: float, threshold: float | None, pollutant: Any
    ) -> AlarmEvent:
        start, end = self.window
        fields = self._aqi_fields()
        # Built from values the engine made itself, so pydantic validation (a third of the engine's
        # time in the benchmark) is skipped; tests check that every event validates to the same.
        values = {
            "schema_version": 1,
            "event_id": f"{ep.alarm_id}:{ep.seq}",
            "alarm_id": ep.alarm_id,
            "kind": kind,
            "station_id": self.station,
            "rule_id": rule.id,
            "pollutant": pollutant,
            "severity": rule.severity,
            "route": rule.route,
            "value": round(value, 3),
            "threshold": None if threshold is None else round(threshold, 3),
            "period": rule.period,
        }
        values |= fields
        values["warning_level"] = self.rules.level
        values["window_start"] = _dt(start)
        values["window_end"] = _dt(end)
        values["opened_at"] = _dt(ep.opened_at)
        values["emitted_at"] = _dt(self.now_ts)
        values["reading_observed_at"] = None if self.reading_ts is None else _dt(self.reading_ts)
        return trusted(AlarmEvent, values)

    def _aqi_fields(self) -> dict[str, Any]:
        """AQI fields of the window being evaluated, computed once per window."""
        key = (self.window, self.view is not None, self.day)
        if self._fields is not None and self._fields[0] == key:
            return self._fields[1]
        fields: dict[str, Any] = {"aqi": None, "aqi_standard": None, "category": None, "category_level": None}
        fields |= {"primary": [], "iaqi": {}}
        if self.view is not None:
            standard = standard_of(self.rules, self.view.h * HOUR)
            fields |= aqi_fields(self.view.aqi(), standard)
        elif self.day is not None:
            standard, result = daily_result(self.state.ring, self.day, self.rules)
            fields |= aqi_fields(result, standard)
        self._fields = (key, fields)
        return fields
