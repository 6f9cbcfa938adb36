"""The `updated` contract of the alarms topic: an open episode sends `updated` only on a material
change (severity, a worse AQI category of an AQI rule, a new worst value, another averaging
period) or as a heartbeat, and its state remembers what was last sent across a table round trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airgrid.config.settings import DATA_DIR
from airgrid.domain.detection import engine
from airgrid.domain.detection.compiled import RuleSet, compile_rules
from airgrid.domain.detection.state import StationState
from airgrid.domain.rules import RulesError, load_rules, parse_rules
from airgrid.models.alarms import AlarmEvent
from airgrid.models.readings import Reading

NOW = datetime(2027, 1, 1, tzinfo=UTC)
T0 = datetime(2025, 12, 1, 16, tzinfo=UTC)  # 2025-12-02 00:00 China time
PM25 = {"id": "pm25_1h", "pollutant": "pm25", "threshold": 75, "clear_below": 60, "clear_hours": 2}


def rules(*rs: dict[str, Any], **updates: float) -> RuleSet:
    return compile_rules(parse_rules({"rules": list(rs), "updates": updates}))


def feed(
    values: list[float], rs: RuleSet, state: StationState | None = None, start: int = 0, **other: float
) -> tuple[StationState, list[AlarmEvent]]:
    state = state or StationState()
    events: list[AlarmEvent] = []
    for i, v in enumerate(values):
        r = Reading.model_validate(
            {
                "station_id": "ST001",
                "observed_at": T0 + timedelta(hours=start + i + 1),
                "interval_s": 3600,
                "values": {"pm25": v, **other},
            }
        )
        state, out, _ = engine.evaluate(state, r, rs, NOW.timestamp())
        events += out
    return state, events


def said(events: list[AlarmEvent]) -> list[tuple[str, float | None, str | None]]:
    return [(e.kind, e.value, e.change) for e in events]


def test_a_steady_episode_sends_one_heartbeat_a_day_and_nothing_else() -> None:
    """Before the contract every hour of this 60-hour episode was an `updated` (58 of them)."""
    _, events = feed([120.0] * 60 + [30.0] * 2, rules(PM25))
    assert said(events) == [
        ("opened", 120.0, None),
        ("updated", 120.0, "heartbeat"),
        ("updated", 120.0, "heartbeat"),
        ("cleared", 30.0, None),
    ]
    assert [e.window_start - events[0].window_start for e in events[1:3]] == [
        timedelta(hours=24),
        timedelta(hours=48),
    ]


def test_new_worst_values_count_from_the_worst_value_sent() -> None:
    """With worse_factor 1.5: 100 -> 140 is not worse (below 150), 151 is; the next step is from 151
    (not from 140, which was never sent), and falling values send nothing."""
    rs = rules(PM25, worse_factor=1.5, heartbeat_hours=0)
    _, events = feed([100.0, 140.0, 151.0, 200.0, 227.0, 120.0, 90.0, 40.0, 40.0], rs)
    assert said(events) == [
        ("opened", 100.0, None),
        ("updated", 151.0, "worse"),
        ("updated", 227.0, "worse"),
        ("cleared", 40.0, None),
    ]


def test_every_event_carries_the_latest_values() -> None:
    rs = rules(PM25, heartbeat_hours=3)
    _, events = feed([100.0, 90.0, 80.0, 85.0, 30.0, 30.0], rs, pm10=200.0)
    (beat,) = [e for e in events if e.kind == "updated"]
    assert (beat.change, beat.value, beat.window_start) == ("heartbeat", 85.0, T0 + timedelta(hours=3))
    assert beat.reading_observed_at == T0 + timedelta(hours=4) and beat.event_id.endswith(":2")


def test_no_heartbeat_while_the_value_is_only_in_the_hysteresis_band() -> None:
    """Between the clear level and the threshold the episode stays open but says nothing."""
    _, events = feed([100.0] + [70.0] * 50 + [30.0] * 2, rules(PM25, heartbeat_hours=6))
    assert said(events) == [("opened", 100.0, None), ("cleared", 30.0, None)]


def test_heartbeat_zero_turns_heartbeats_off() -> None:
    _, events = feed([120.0] * 60, rules(PM25, heartbeat_hours=0))
    assert said(events) == [("opened", 120.0, None)]


def test_a_calendar_day_rule_updates_once_per_new_day() -> None:
    day = {"id": "pm25_day", "pollutant": "pm25", "period": "day", "threshold": 75, "clear_hours": 1}
    _, events = feed([100.0] * 24 * 3 + [20.0] * 24, rules(day))
    assert said(events) == [
        ("opened", 100.0, None),
        ("updated", 100.0, "period"),
        ("updated", 100.0, "period"),
        ("cleared", 20.0, None),
    ]
    assert [e.window_start.astimezone(UTC).day for e in events] == [1, 2, 3, 4]


def test_aqi_category_updates_only_on_a_worse_category() -> None:
    """An AQI rule updates when the category gets worse than any sent, not when it falls back
    or climbs again to one already sent."""
    aqi = {"id": "aqi4", "kind": "aqi_category", "min_level": 4, "clear_hours": 1}
    full = {"pm10": 50.0, "so2": 10.0, "no2": 40.0, "co": 1.0, "o3": 50.0}
    start = datetime(2026, 6, 1, tzinfo=UTC) - T0  # HJ 633-2026: real-time PM from the 1 h value
    values = [130.0, 200.0, 130.0, 200.0, 300.0, 130.0, 30.0]
    _, events = feed(values, rules(aqi, heartbeat_hours=0), start=int(start.total_seconds() // 3600), **full)
    assert [(e.kind, e.category_level, e.change) for e in events] == [
        ("opened", 4, None),
        ("updated", 5, "category"),
        ("updated", 6, "category"),
        ("cleared", 1, None),
    ]


def test_a_rule_whose_severity_or_period_changed_updates_its_open_episode() -> None:
    """A deployment changes its catalogue and restarts: the episodes open in the table learn it."""
    state, _ = feed([100.0], rules(PM25))
    state = StationState.from_json(json.loads(json.dumps(state.to_json())))
    state, more = feed([100.0], rules({**PM25, "severity": "critical"}), state, start=1)
    assert [(e.kind, e.change, e.severity) for e in more] == [("updated", "severity", "critical")]
    state, more = feed([100.0], rules(PM25), state, start=2)
    assert [(e.kind, e.change, e.severity) for e in more] == [("updated", "severity", "major")]
    assert feed([100.0], rules(PM25), state, start=3)[1] == []


def test_a_revised_past_hour_sends_only_a_new_worst_value() -> None:
    """A late reading within the grace re-evaluates its hour: no heartbeat, category or day for
    an old hour, but a new worst value is news."""
    rs = compile_rules(parse_rules({"rules": [PM25], "updates": {"heartbeat_hours": 1}}), grace_s=7200)
    state = StationState()
    events: list[AlarmEvent] = []

    def put(end: datetime, pm25: float, interval: int = 1800) -> None:
        nonlocal state
        r = Reading.model_validate(
            {"station_id": "ST001", "observed_at": end, "interval_s": interval, "values": {"pm25": pm25}}
        )
        state, out, _ = engine.evaluate(state, r, rs, NOW.timestamp())
        events.extend(out)

    put(T0 + timedelta(minutes=50), 100.0, 3000)  # 50 min: valid hour, closed by the next hour
    put(T0 + timedelta(hours=1, minutes=50), 100.0, 3000)
    put(T0 + timedelta(hours=2, minutes=10), 100.0, 600)  # closes hour 1: a heartbeat is due
    assert said(events) == [("opened", 100.0, None), ("updated", 100.0, "heartbeat")]
    put(T0 + timedelta(hours=2), 160.0, 600)  # hour 1 revised: mean 110, not worse
    assert len(events) == 2
    put(T0 + timedelta(hours=1), 1300.0, 600)  # hour 0 revised: mean 300, a new worst
    assert said(events[2:]) == [("updated", 300.0, "worse")]
    assert events[2].window_start == T0


def test_episode_state_round_trips_and_old_states_still_read() -> None:
    state, _ = feed([100.0, 250.0], rules(PM25, heartbeat_hours=0))
    raw = json.loads(json.dumps(state.to_json()))
    back = StationState.from_json(raw)
    assert back.episodes == state.episodes
    (ep,) = back.episodes.values()
    assert (ep.peak, ep.sent, ep.mark) == (250.0, (T0 + timedelta(hours=2)).timestamp(), "201h")
    assert len(json.dumps(raw["e"])) < 120  # one open episode stays small in the table
    # a state written before `sent`/`mark` existed (five fields): read, and no spurious update
    raw["e"] = {k: v[:5] for k, v in raw["e"].items()}
    old = StationState.from_json(raw)
    assert old.episodes["pm25_1h"].sent == old.episodes["pm25_1h"].opened_at
    assert feed([240.0], rules(PM25, heartbeat_hours=0), old, start=2)[1] == []


def test_the_updates_settings_are_validated_with_a_one_line_error() -> None:
    with pytest.raises(RulesError, match=r"updates\.worse_factor: Input should be greater than or equal"):
        parse_rules({"rules": [PM25], "updates": {"worse_factor": 0.5}})
    with pytest.raises(RulesError, match=r"updates\.heartbeat: Extra inputs are not permitted"):
        parse_rules({"rules": [PM25], "updates": {"heartbeat": 5}})


def test_the_shipped_catalogue_sets_the_contract() -> None:
    rs = compile_rules(load_rules(DATA_DIR / "rules.toml"))
    assert (rs.worse_factor, rs.heartbeat_s) == (2.0, 86400.0)


def test_watch_says_why_an_update_was_sent(tmp_path: Any) -> None:
    from zoneinfo import ZoneInfo

    from airgrid.config.settings import load_settings
    from airgrid.kafka.topics import TopicNames
    from airgrid.ops.watch import Formatter

    _, events = feed([100.0, 250.0, 30.0, 30.0], rules(PM25))
    fmt = Formatter(TopicNames.of(load_settings(store="memory", data_dir=tmp_path)), ZoneInfo("UTC"), False)
    lines = [fmt.line("alarms", json.loads(e.model_dump_json())) for e in events]
    assert lines[1].startswith("ALARM updated ST001  pm25_1h: pm25 250.0") and lines[1].endswith(
        "[major] (worse)"
    )
    assert lines[0].endswith("[major]") and lines[2].endswith("[major]")
