"""Detection in event time: hourly averages per station and alarm episodes with hysteresis.

Pure: ``evaluate(state, reading, rules, now) -> (state, alarms, outcome)``. The state is a plain
JSON-able object so the agent can keep it in a changelog-backed table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from airgrid.domain.rules import ExceedanceRule, RuleCatalogue
from airgrid.models.alarms import AlarmEvent, AlarmKind
from airgrid.models.readings import Reading

HOUR = timedelta(hours=1)
Outcome = Literal["accepted", "duplicate", "late"]


@dataclass
class Episode:
    alarm_id: str
    opened_at: datetime
    seq: int = 0
    peak: float = 0.0
    calm_hours: int = 0


@dataclass
class StationState:
    """What detection remembers of one station."""

    hour: datetime | None = None
    sums: dict[str, float] = field(default_factory=dict)
    secs: dict[str, float] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)  # observed_at of the readings in this hour
    closed: bool = False  # the current hour is complete and was evaluated
    last_hourly: dict[str, float] = field(default_factory=dict)
    episodes: dict[str, Episode] = field(default_factory=dict)
    late: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "hour": self.hour.isoformat() if self.hour else None,
            "sums": self.sums,
            "secs": self.secs,
            "seen": self.seen,
            "closed": self.closed,
            "last_hourly": self.last_hourly,
            "episodes": {
                k: [e.alarm_id, e.opened_at.isoformat(), e.seq, e.peak, e.calm_hours]
                for k, e in self.episodes.items()
            },
            "late": self.late,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> StationState:
        if not raw:
            return cls()
        return cls(
            hour=datetime.fromisoformat(raw["hour"]) if raw.get("hour") else None,
            sums=dict(raw.get("sums", {})),
            secs=dict(raw.get("secs", {})),
            seen=list(raw.get("seen", [])),
            closed=bool(raw.get("closed", False)),
            last_hourly=dict(raw.get("last_hourly", {})),
            episodes={
                k: Episode(v[0], datetime.fromisoformat(v[1]), v[2], v[3], v[4])
                for k, v in raw.get("episodes", {}).items()
            },
            late=int(raw.get("late", 0)),
        )


def hour_of(reading: Reading) -> datetime:
    """The clock hour an interval belongs to: ``observed_at`` is the END of the interval, so a
    reading ending exactly on the hour belongs to the hour before it."""
    t = reading.observed_at.astimezone(UTC) - timedelta(microseconds=1)
    return t.replace(minute=0, second=0, microsecond=0)


def evaluate(
    state: StationState, reading: Reading, rules: RuleCatalogue, now: datetime
) -> tuple[StationState, list[AlarmEvent], Outcome]:
    """Fold one reading into the station's state; return alarm events of hours it completes."""
    hour = hour_of(reading)
    # the instant in UTC: the same observed_at sent with another UTC offset is still a duplicate
    stamp = reading.observed_at.astimezone(UTC).isoformat()
    alarms: list[AlarmEvent] = []
    if state.hour is not None and hour < state.hour:
        state.late += 1
        return state, alarms, "late"
    if state.hour is not None and hour > state.hour:
        if not state.closed:
            alarms += _close_hour(state, reading, rules, now)
        state.hour, state.sums, state.secs, state.seen, state.closed = hour, {}, {}, [], False
    elif state.hour is None:
        state.hour = hour
    if stamp in state.seen:
        return state, alarms, "duplicate"
    if state.closed:  # a reading after the hour was already complete: count it as late
        state.late += 1
        return state, alarms, "late"
    state.seen.append(stamp)
    weight = float(reading.interval_s)
    for pollutant, value in reading.valid_values().items():
        state.sums[pollutant] = state.sums.get(pollutant, 0.0) + value * weight
        state.secs[pollutant] = state.secs.get(pollutant, 0.0) + weight
    if max(state.secs.values(), default=0.0) >= HOUR.total_seconds():
        alarms += _close_hour(state, reading, rules, now)
        state.closed = True
    return state, alarms, "accepted"


def _close_hour(
    state: StationState, reading: Reading, rules: RuleCatalogue, now: datetime
) -> list[AlarmEvent]:
    assert state.hour is not None
    averages = {p: state.sums[p] / secs for p, secs in state.secs.items() if secs >= rules.min_coverage_s}
    state.last_hourly = {p: round(v, 3) for p, v in averages.items()}
    out: list[AlarmEvent] = []
    for rule in rules.rules:
        value = averages.get(rule.pollutant)
        if value is not None:
            event = _apply_rule(state, rule, value, reading, now)
            if event is not None:
                out.append(event)
    return out


def _apply_rule(
    state: StationState, rule: ExceedanceRule, value: float, reading: Reading, now: datetime
) -> AlarmEvent | None:
    assert state.hour is not None
    episode = state.episodes.get(rule.id)
    kind: AlarmKind
    if value > rule.threshold:
        if episode is None:
            opened = state.hour
            episode = Episode(
                alarm_id=f"{reading.station_id}:{rule.id}:{opened.strftime('%Y%m%dT%H%MZ')}",
                opened_at=opened,
            )
            state.episodes[rule.id] = episode
            kind = "opened"
        else:
            kind = "updated"
        episode.calm_hours = 0
        episode.peak = max(episode.peak, value)
    elif episode is None:
        return None
    elif value <= rule.clear_below:
        episode.calm_hours += 1
        if episode.calm_hours < rule.clear_hours:
            return None
        del state.episodes[rule.id]
        kind = "cleared"
    else:
        episode.calm_hours = 0
        return None
    episode.seq += 1
    return AlarmEvent(
        event_id=f"{episode.alarm_id}:{episode.seq}",
        alarm_id=episode.alarm_id,
        kind=kind,
        station_id=reading.station_id,
        rule_id=rule.id,
        pollutant=rule.pollutant,
        severity=rule.severity,
        route=rule.route,
        value=round(value, 3),
        threshold=rule.threshold,
        period=rule.period,
        window_start=state.hour,
        window_end=state.hour + HOUR,
        opened_at=episode.opened_at,
        emitted_at=now,
        reading_observed_at=reading.observed_at,
    )
