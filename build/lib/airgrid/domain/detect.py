"""Detection's public face: ``evaluate(state, reading, rules, now) -> (state, alarms, outcome)``.

The engine lives in :mod:`airgrid.domain.detection`; this module takes datetimes and either a
compiled :class:`RuleSet` (what the agents pass, one per warning level) or a plain
:class:`RuleCatalogue` (compiled once for warning level "none", no late grace, AQI by date).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airgrid.domain.detection import engine
from airgrid.domain.detection.compiled import RuleSet, compile_rules
from airgrid.domain.detection.engine import Outcome
from airgrid.domain.detection.state import Bucket, Episode, StationState
from airgrid.domain.rules import RuleCatalogue
from airgrid.models.alarms import AlarmEvent
from airgrid.models.readings import Reading

__all__ = [
    "Bucket",
    "Episode",
    "Outcome",
    "RuleSet",
    "StationState",
    "check_silence",
    "compile_rules",
    "evaluate",
    "hour_of",
]

_COMPILED: dict[int, tuple[RuleCatalogue, RuleSet]] = {}


def _ruleset(rules: RuleCatalogue | RuleSet) -> RuleSet:
    if isinstance(rules, RuleSet):
        return rules
    hit = _COMPILED.get(id(rules))
    if hit is None or hit[0] is not rules:
        if len(_COMPILED) > 64:
            _COMPILED.clear()
        hit = _COMPILED[id(rules)] = (rules, compile_rules(rules))
    return hit[1]


def hour_of(reading: Reading) -> datetime:
    """The clock hour an interval belongs to: ``observed_at`` is the END of the interval, so a
    reading ending exactly on the hour belongs to the hour before it."""
    h = engine.hour_number(reading.observed_at.timestamp())
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(hours=h)


def evaluate(
    state: StationState, reading: Reading, rules: RuleCatalogue | RuleSet, now: datetime
) -> tuple[StationState, list[AlarmEvent], Outcome]:
    """Fold one reading into the station's state; return the alarm events it causes."""
    return engine.evaluate(state, reading, _ruleset(rules), now.timestamp())


def check_silence(
    state: StationState, station_id: str, rules: RuleCatalogue | RuleSet, now: datetime
) -> list[AlarmEvent]:
    """Silence episodes of a station that sent nothing (called on a timer's command)."""
    return engine.check_silence(state, station_id, _ruleset(rules), now.timestamp())
