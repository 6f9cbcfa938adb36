"""The regional background, regional episodes, local excess and the dispatch they decide (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from airgrid.domain.detection.compiled import RuleSet, compile_rules
from airgrid.domain.regional import (
    TICK_AFTER_S,
    Outcome,
    RegionLogic,
    RegionState,
    alarm_hour,
    background,
    excess_threshold,
)
from airgrid.domain.rules import Regional, parse_rules
from airgrid.models.alarms import AlarmEvent

H0 = 480_000  # an hour number (2024-10-04)
STATIONS = ("S1", "S2", "S3", "S4", "S5")


def catalogue(**regional: object) -> RuleSet:
    cat = parse_rules(
        {
            "regional": {"min_stations": 3, "episode": {"above": 75, "share": 0.6, "min_stations": 3}}
            | regional,
            "rules": [
                {"id": "pm25_1h", "pollutant": "pm25", "threshold": 75.0},
                {
                    "id": "pm25_local",
                    "kind": "local_excess",
                    "pollutant": "pm25",
                    "above_abs": 35,
                    "above_ratio": 0.5,
                    "hours": 2,
                    "clear_hours": 1,
                },
            ],
        }
    )
    return compile_rules(cat)


def logic(dispatch: str = "none", **regional: object) -> tuple[RegionLogic, RuleSet]:
    rs = catalogue(**regional)
    cfg = Regional.model_validate(
        {"min_stations": 3, "episode": {"above": 75, "share": 0.6, "min_stations": 3}} | regional
    )
    return RegionLogic(cfg, {"R": len(STATIONS)}, dispatch, {"R": "L1"}), rs  # type: ignore[arg-type]


def alarm(station: str, hour: int, rule: str = "pm25_1h") -> AlarmEvent:
    start = datetime.fromtimestamp(hour * 3600, UTC)
    end = datetime.fromtimestamp((hour + 1) * 3600, UTC)
    stamp = start.strftime("%Y%m%dT%H%MZ")
    return AlarmEvent(
        event_id=f"{station}:{rule}:{stamp}:1",
        alarm_id=f"{station}:{rule}:{stamp}",
        kind="opened",
        station_id=station,
        rule_id=rule,
        pollutant="pm25",
        severity="major",
        route="grid",
        value=120.0,
        threshold=75.0,
        period="1h",
        window_start=start,
        window_end=end,
        opened_at=start,
        emitted_at=end,
    )


def hour_of(lg: RegionLogic, rs: RuleSet, st: RegionState, hour: int, pm25: dict[str, float]) -> Outcome:
    """Every station reports ``hour`` (the last one completes it); the outcomes merged."""
    total = Outcome()
    for station, v in pm25.items():
        out = lg.add_hour(st, "R", station, hour, {"pm25": v}, rs, (hour + 1) * 3600.0)
        total.hours += out.hours
        total.decisions += out.decisions
        total.alarms += out.alarms
        total.dispatch += out.dispatch
    return total


def test_background_is_robust_to_one_wild_station() -> None:
    assert background([10, 12, 11, 500], "median", 0.2, 3) == 11.5
    assert background([10, 12, 11, 500, 13], "median", 0.2, 3) == 12
    assert background([10, 12, 11, 500, 13], "trimmed_mean", 0.2, 3) == 12  # 500 and 10 cut
    assert background([10, 12], "median", 0.2, 3) is None  # too few stations


def test_excess_needs_both_margins() -> None:
    rs = catalogue()
    (rule,) = rs.regional
    assert excess_threshold(rule, 20.0) == 55.0  # +35 beats x1.5
    assert excess_threshold(rule, 100.0) == 150.0  # x1.5 beats +35


def test_hour_completes_when_every_station_reported() -> None:
    lg, rs = logic()
    st = RegionState()
    for i, station in enumerate(STATIONS[:-1]):
        out = lg.add_hour(st, "R", station, H0, {"pm25": 20.0 + i}, rs, 0.0)
        assert not out.hours
    out = lg.add_hour(st, "R", "S5", H0, {"pm25": 30.0, "temp": 3.0}, rs, 0.0)
    (record,) = out.hours
    assert record.background == {"pm25": 22.0}
    assert record.counts == {"pm25": 5}
    assert record.reporting == 5 and record.stations == 5 and not record.episode
    assert st.done == H0 and not st.hours
    late = lg.add_hour(st, "R", "S1", H0, {"pm25": 99.0}, rs, 0.0)
    assert late.late == 1 and late.empty


def test_a_silent_station_is_waited_for_wait_hours_by_the_wall_clock_then_not() -> None:
    lg, rs = logic()
    st = RegionState()
    hour_of(lg, rs, st, H0 - 1, dict.fromkeys(STATIONS, 40.0))  # at H0 by the clock
    now = H0 * 3600.0
    for station in STATIONS[:4]:  # S5 falls silent
        assert not lg.add_hour(st, "R", station, H0, {"pm25": 40.0}, rs, now + 60).hours
    lg.add_alarm(st, "R", H0, alarm("S1", H0), rs, now + 60)
    assert lg.tick_due(st, now + 60 + TICK_AFTER_S)
    assert lg.tick(st, "R", rs, now + 7199).empty  # S5 is still waited for
    out = lg.tick(st, "R", rs, now + 7200)  # two hours without a word from S5 (wait_hours)
    assert [(r.hour_start.timestamp(), r.reporting) for r in out.hours] == [(H0 * 3600, 4)]
    assert [d.action for d in out.decisions] == ["level3"]
    assert not lg.tick_due(st, now + 9000)  # nothing open any more


def test_stations_far_behind_by_event_time_are_waited_for_while_their_data_arrives() -> None:
    """A backlog read from several partitions: one station's hours arrive hours ahead of the
    others'; the region waits for every station that is still sending."""
    lg, rs = logic()
    st = RegionState()
    hour_of(lg, rs, st, H0 - 1, dict.fromkeys(STATIONS, 40.0))
    for h in range(H0, H0 + 3):
        assert not lg.add_hour(st, "R", "S1", h, {"pm25": 40.0}, rs, 10.0).hours
    for station in STATIONS[1:-1]:
        for h in range(H0, H0 + 3):
            assert not lg.add_hour(st, "R", station, h, {"pm25": 40.0}, rs, 10.0).hours
    out = lg.add_hour(st, "R", "S5", H0, {"pm25": 40.0}, rs, 10.0)
    assert [(r.hour_start.timestamp(), r.reporting) for r in out.hours] == [(H0 * 3600, 5)]


def test_a_new_region_waits_for_every_station_of_the_directory_up_to_wait_hours() -> None:
    lg, rs = logic()
    st = RegionState()
    for station in STATIONS[:3]:
        assert not lg.add_hour(st, "R", station, H0, {"pm25": 40.0}, rs, 0.0).hours
    assert lg.tick(st, "R", rs, 7199.0).empty
    (record,) = lg.tick(st, "R", rs, 7200.0).hours
    assert record.reporting == 3 and record.background == {"pm25": 40.0}


def test_regional_episode_suppresses_level3_dispatch_but_not_local_excess() -> None:
    lg, rs = logic("none")
    st = RegionState()
    calm = {"S1": 30.0, "S2": 32.0, "S3": 28.0, "S4": 35.0, "S5": 31.0}
    hour_of(lg, rs, st, H0, calm)
    # haze everywhere, and S5 far above the rest for two hours: a local source
    haze = {"S1": 120.0, "S2": 130.0, "S3": 125.0, "S4": 118.0, "S5": 260.0}
    for s in STATIONS:
        lg.add_alarm(st, "R", H0 + 1, alarm(s, H0 + 1), rs, 0.0)
    first = hour_of(lg, rs, st, H0 + 1, haze)
    assert first.hours[0].episode and first.hours[0].share_above == 1.0
    assert first.hours[0].local_excess == ["S5"]
    assert {d.action for d in first.decisions} == {"suppressed"}
    assert len(first.decisions) == 5 and not first.dispatch and not first.alarms
    second = hour_of(lg, rs, st, H0 + 2, haze)
    (opened,) = second.alarms
    assert opened.rule_id == "pm25_local" and opened.station_id == "S5" and opened.kind == "opened"
    assert opened.value == 260.0 and opened.threshold == 187.5  # 125 x 1.5
    assert [(a.alarm_id, task) for a, task in second.dispatch] == [(opened.alarm_id, None)]
    assert [(d.station_id, d.action) for d in second.decisions] == [("S5", "level3")]
    # S5 falls back into the haze: its local excess clears (clear_hours 1)
    third = hour_of(lg, rs, st, H0 + 3, haze | {"S5": 125.0})
    assert [a.kind for a in third.alarms] == ["cleared"]


def test_episode_ends_after_clear_hours_and_dispatch_returns_to_level3() -> None:
    lg, rs = logic("none")
    st = RegionState()
    hour_of(lg, rs, st, H0, dict.fromkeys(STATIONS, 120.0))
    assert st.since == H0 * 3600
    hour_of(lg, rs, st, H0 + 1, dict.fromkeys(STATIONS, 40.0))
    assert st.since is not None  # one calm hour of two
    lg.add_alarm(st, "R", H0 + 2, alarm("S1", H0 + 2), rs, 0.0)
    out = hour_of(lg, rs, st, H0 + 2, dict.fromkeys(STATIONS, 40.0))
    assert st.since is None and not out.hours[0].episode
    assert [d.action for d in out.decisions] == ["level3"]


def test_region_dispatch_gives_one_region_task_per_episode() -> None:
    lg, rs = logic("level2")
    st = RegionState()
    opened = hour_of(lg, rs, st, H0, dict.fromkeys(STATIONS, 120.0))
    ((episode, task),) = opened.dispatch
    assert task is not None and task.grid == "R" and task.level == 2 and task.parent == "L1"
    assert episode.station_id == "R" and episode.rule_id == "regional_episode"
    lg.add_alarm(st, "R", H0 + 1, alarm("S2", H0 + 1), rs, 0.0)
    out = hour_of(lg, rs, st, H0 + 1, dict.fromkeys(STATIONS, 130.0))
    ((joined, same),) = out.dispatch
    assert joined.station_id == "S2" and same is not None
    assert same.episode.alarm_id == episode.alarm_id  # the same region task
    assert [d.action for d in out.decisions] == ["region"]
    lg1, _ = logic("level1")
    ((_, top),) = hour_of(lg1, rs, RegionState(), H0, dict.fromkeys(STATIONS, 120.0)).dispatch
    assert top is not None and top.grid == "L1" and top.level == 1


def test_an_alarm_after_its_hour_completed_gets_that_hours_verdict() -> None:
    lg, rs = logic("none")
    st = RegionState()
    hour_of(lg, rs, st, H0, dict.fromkeys(STATIONS, 120.0))
    for h in (H0 + 1, H0 + 2):
        hour_of(lg, rs, st, h, dict.fromkeys(STATIONS, 40.0))
    assert st.since is None
    late = lg.add_alarm(st, "R", H0, alarm("S3", H0), rs, 0.0)
    assert [d.action for d in late.decisions] == ["suppressed"]  # the episode held in H0
    later = lg.add_alarm(st, "R", H0 + 2, alarm("S3", H0 + 2), rs, 0.0)
    assert [d.action for d in later.decisions] == ["level3"]


def test_replays_change_nothing_and_the_state_survives_json() -> None:
    lg, rs = logic("none")
    st = RegionState()
    now = (H0 + 1) * 3600.0
    lg.add_hour(st, "R", "S1", H0, {"pm25": 120.0}, rs, now)
    lg.add_alarm(st, "R", H0, alarm("S1", H0), rs, now)
    assert lg.add_hour(st, "R", "S1", H0, {"pm25": 120.0}, rs, now).duplicate == 1
    assert lg.add_alarm(st, "R", H0, alarm("S1", H0), rs, now).duplicate == 1
    back = RegionState.from_json(st.to_json())
    assert back == st
    out = hour_of(lg, rs, back, H0, {s: 120.0 for s in STATIONS[1:]})
    assert [d.action for d in out.decisions] == ["suppressed"]


def test_alarm_hour_is_the_hour_ending_at_the_window_end() -> None:
    assert alarm_hour(alarm("S1", H0)) == H0


def test_a_local_excess_rule_needs_the_regional_section() -> None:
    from airgrid.domain.rules import RulesError

    with pytest.raises(RulesError, match="needs the \\[regional\\] section"):
        parse_rules({"rules": [{"id": "x", "kind": "local_excess", "pollutant": "pm25"}]})


def test_watch_prints_region_hours_decisions_and_aqi_alarms_readably(tmp_path: Path) -> None:
    from zoneinfo import ZoneInfo

    from airgrid.config.settings import load_settings
    from airgrid.kafka.topics import TopicNames
    from airgrid.ops.watch import Formatter

    names = TopicNames.of(load_settings(store="memory", data_dir=tmp_path))
    fmt = Formatter(names, ZoneInfo("UTC"), False)
    lg, rs = logic("none")
    st = RegionState()
    for s in STATIONS:
        lg.add_alarm(st, "R", H0, alarm(s, H0), rs, (H0 + 1) * 3600.0)
    out = hour_of(lg, rs, st, H0, dict.fromkeys(STATIONS, 120.0) | {"S5": 300.0})
    (hour,) = [fmt.line(names.regions, json.loads(r.model_dump_json())) for r in out.hours]
    want = "REGION hour R 10-04 00:00:00 5/5 stations, background pm25 120.0; regional episode"
    assert hour == want + "; local excess S5"
    first = fmt.line(names.regions, json.loads(out.decisions[0].model_dump_json()))
    assert first.endswith("-> suppressed (regional episode)") and first.startswith("REGION dispatch R S")
    aqi = alarm("S1", H0).model_copy(
        update={"rule_id": "aqi_heavy", "pollutant": None, "threshold": None, "value": 210.0, "aqi": 210}
    )
    line = fmt.line(names.alarms, json.loads(aqi.model_dump_json()))
    assert "aqi_heavy: AQI 210 hour" in line and "None" not in line
