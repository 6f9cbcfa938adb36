"""Alarm episodes: open once per (station, rule, pollutant), update while the condition lasts, clear
after ``clear_hours`` consecutive calm evaluations (hysteresis: between the clear level and the
threshold the calm count restarts).

``updated`` is sent only on a material change against what the episode's last event said
(``change``): ``severity`` (the rule's severity changed, e.g. under a warning profile),
``category`` (the AQI category of the evaluated window changed), ``period`` (another averaging
period: the next calendar day of a day rule, or a profile that changed the rule's period),
``worse`` (a new worst value, above ``RuleSet.worse_factor`` x the worst value sent); otherwise at
most one ``heartbeat`` per ``RuleSet.heartbeat_s`` of event time while the episode lasts. Every
event carries the latest values. A revised past hour (a late reading) may only send ``worse``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from airgrid.domain.detection.compiled import Rule, RuleSet
from airgrid.domain.detection.hour import HOUR, HourView, aqi_fields, daily_result, standard_of
from airgrid.domain.detection.state import Episode, StationState
from airgrid.models.alarms import AlarmChange, AlarmEvent, AlarmKind
from airgrid.models.common import trusted
from airgrid.models.readings import Wind

SEVERITY_RANK = {"info": "0", "minor": "1", "major": "2", "critical": "3"}


@lru_cache(maxsize=8192)
def _dt(ts: float) -> datetime:
    """Aware datetime of an epoch second; memoised: an hour's window and opening repeat for
    every rule and station that fires in it (datetimes are immutable, sharing is safe)."""
    return datetime.fromtimestamp(ts, UTC)


class Emitter:
    """Collects the events of one call; ``window``/``view``/``day`` describe what is evaluated."""

    __slots__ = (
        "_fields",
        "_stamp",
        "closed",
        "day",
        "events",
        "now_ts",
        "reading_ts",
        "rules",
        "state",
        "station",
        "view",
        "wind",
        "window",
    )

    def __init__(
        self,
        state: StationState,
        station: str,
        rules: RuleSet,
        now_ts: float,
        reading_ts: float | None,
        wind: Wind | None = None,
    ) -> None:
        self.state = state
        self.station = station
        self.rules = rules
        self.now_ts = now_ts
        self.reading_ts = reading_ts
        self.wind = wind  # of the reading being folded: every event of this call carries it
        self.events: list[AlarmEvent] = []
        self.window: tuple[float, float] = (0.0, 0.0)
        self.view: HourView | None = None
        self.day: int | None = None
        self._fields: tuple[Any, dict[str, Any]] | None = None
        self._stamp: dict[str, Any] | None = None
        # (hour, valid hourly values) of each hour closed for the first time, when asked for
        self.closed: list[tuple[int, dict[str, float]]] | None = None

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
        change: AlarmChange | None = None
        if cond:
            if ep is None:
                start = self.window[0] if opened is None else opened
                stamp = _dt(start).strftime("%Y%m%dT%H%MZ")
                ep = episodes[key] = Episode(alarm_id=f"{self.station}:{key}:{stamp}", opened_at=start)
                kind = "opened"
                ep.mark = self._mark(rule)
            else:  # the condition holds: an update only if something material changed
                ep.calm = 0
                change = self._change(rule, ep, value, revision)
                if change is None:
                    return
                kind = "updated"
            ep.peak = max(ep.peak, value) if kind == "updated" else value
        elif ep is None or revision:
            return
        elif calm:
            ep.calm += 1
            if ep.calm < rule.clear_hours:
                return
            del episodes[key]
            kind = "cleared"
        else:
            ep.calm = 0  # between the clear level and the threshold: it lasts, nothing to tell
            return
        ep.seq += 1
        ep.sent = max(ep.sent, self.window[1])
        self.events.append(
            self._event(rule, ep, kind, value, threshold, pollutant or rule.pollutant or None, change)
        )

    def _mark(self, rule: Rule, before: str = "") -> str:
        """What an event sent now says besides its value: severity rank, AQI category level (of
        an ``aqi_category`` rule, the worst sent; 0 otherwise) and period."""
        level = "0"
        if rule.kind == "aqi_category" and self.view is not None:
            level = str(self._window_fields()["category_level"] or 0)
            if before[1:2] > level:
                level = before[1]
        return f"{SEVERITY_RANK[rule.severity]}{level}{rule.period}"

    def _change(self, rule: Rule, ep: Episode, value: float, revision: bool) -> AlarmChange | None:
        """Why an evaluation of an open episode whose condition holds is worth an ``updated``,
        most significant first; None when it is not."""
        # a negative peak (an impossible negative reading) has no "worse": only positive values grow
        worse = ep.peak > 0 and value > ep.peak * self.rules.worse_factor
        if revision:  # a past hour: its category or day is old news, only a new worst counts
            return "worse" if worse else None
        before = ep.mark
        mark = self._mark(rule, before)
        if not before:  # an episode stored before marks existed: learn it, tell nothing
            ep.mark = before = mark
        found: AlarmChange | None = None
        if mark[0] != before[0]:
            found = "severity"
        elif mark[1] > before[1] > "0":
            found = "category"
        elif worse:
            found = "worse"
        elif mark[2:] != before[2:] or (rule.period == "day" and self.window[1] > ep.sent):
            found = "period"  # a calendar-day rule: each evaluation is the next day
        elif self.rules.heartbeat_s > 0 and self.window[1] - ep.sent >= self.rules.heartbeat_s:
            found = "heartbeat"
        if found is not None:
            ep.mark = mark
        return found

    def _event(
        self,
        rule: Rule,
        ep: Episode,
        kind: AlarmKind,
        value: float,
        threshold: float | None,
        pollutant: Any,
        change: AlarmChange | None,
    ) -> AlarmEvent:
        # Built from values the engine made itself, so pydantic validation (a third of the engine's
        # time in the benchmark) is skipped; tests check that every event validates to the same.
        # Keys in the model's field order (the JSON follows it).
        values = {
            "schema_version": 3,
            "event_id": f"{ep.alarm_id}:{ep.seq}",
            "alarm_id": ep.alarm_id,
            "kind": kind,
            "change": change,
            "station_id": self.station,
            "rule_id": rule.id,
            "pollutant": pollutant,
            "severity": rule.severity,
            "route": rule.route,
            "value": round(value, 3),
            "threshold": None if threshold is None else round(threshold, 3),
            "period": rule.period,
        }
        values |= self._window_fields()
        values["opened_at"] = _dt(ep.opened_at)
        values |= self._stamps()
        return trusted(AlarmEvent, values)

    def _stamps(self) -> dict[str, Any]:
        """``emitted_at``, ``reading_observed_at`` and ``wind``: the same for every event of the call."""
        if self._stamp is None:
            observed = None if self.reading_ts is None else _dt(self.reading_ts)
            self._stamp = {"emitted_at": _dt(self.now_ts), "reading_observed_at": observed, "wind": self.wind}
        return self._stamp

    def _window_fields(self) -> dict[str, Any]:
        """AQI fields, warning level and bounds of the window being evaluated, once per window."""
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
        fields["warning_level"] = self.rules.level
        start, end = self.window
        fields["window_start"] = _dt(start)
        fields["window_end"] = _dt(end)
        self._fields = (key, fields)
        return fields
