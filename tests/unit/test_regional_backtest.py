"""RegionLogic as ``backtest --tasks`` drives it (pure, the data's time as the injected clock): what
the task replay relies on beyond tests/unit/test_regional.py."""

from __future__ import annotations

from airgrid.domain.detection.compiled import RuleSet, compile_rules
from airgrid.domain.regional import REGIONAL_RULE, Outcome, RegionalDispatch, RegionLogic, RegionState
from airgrid.domain.rules import Regional, parse_rules
from tests.unit.test_regional import alarm

H0 = 420_000  # an hour number (2017-11-30)
STATIONS = ("A", "B", "C")
REGIONAL = {"min_stations": 3, "episode": {"above": 75, "share": 0.6, "min_stations": 3, "open_hours": 2}}


def setup(dispatch: RegionalDispatch = "none") -> tuple[RegionLogic, RuleSet, RegionState]:
    cat = parse_rules(
        {
            "regional": REGIONAL,
            "rules": [
                {"id": "pm25_1h", "pollutant": "pm25", "threshold": 75.0},
                {
                    "id": "pm25_local",
                    "kind": "local_excess",
                    "pollutant": "pm25",
                    "above_abs": 35,
                    "above_ratio": 0.5,
                    "hours": 2,
                    "clear_hours": 2,
                },
            ],
        }
    )
    cfg = Regional.model_validate(REGIONAL)
    return RegionLogic(cfg, {"R": 3}, dispatch, {"R": "L1"}), compile_rules(cat), RegionState()


def hour(lg: RegionLogic, rs: RuleSet, st: RegionState, h: int, pm25: dict[str, float | None]) -> Outcome:
    """Every station reports hour ``h`` at its end (None: no valid PM2.5); outcomes merged."""
    total = Outcome()
    for station, v in pm25.items():
        out = lg.add_hour(st, "R", station, h, {} if v is None else {"pm25": v}, rs, (h + 1) * 3600.0)
        total.hours += out.hours
        total.decisions += out.decisions
        total.alarms += out.alarms
        total.dispatch += out.dispatch
    return total


def haze(v: float = 200.0) -> dict[str, float | None]:
    return dict.fromkeys(STATIONS, v)


def test_an_alarm_of_an_hour_no_station_hour_came_for_is_decided_when_a_later_hour_completes() -> None:
    lg, rs, st = setup()
    pending = lg.add_alarm(st, "R", H0, alarm("A", H0), rs, (H0 + 1) * 3600.0)
    assert pending.empty  # waits for its hour's verdict
    out = hour(lg, rs, st, H0 + 1, haze(30))
    assert [(d.alarm_id, d.hour, d.action) for d in out.decisions] == [
        (alarm("A", H0).alarm_id, H0, "level3")
    ]
    assert [a.alarm_id for a, task in out.dispatch] == [alarm("A", H0).alarm_id]


def test_hours_with_too_few_valid_values_keep_the_episode_and_its_suppression() -> None:
    lg, rs, st = setup()
    hour(lg, rs, st, H0, haze())
    hour(lg, rs, st, H0 + 1, haze())
    assert st.since == H0 * 3600.0  # open_hours = 2: the episode starts with the first hour
    # every station reports, but only two have a valid PM2.5: the share says nothing
    lg.add_alarm(st, "R", H0 + 2, alarm("B", H0 + 2), rs, (H0 + 3) * 3600.0)
    out = hour(lg, rs, st, H0 + 2, {"A": 10.0, "B": 10.0, "C": None})
    (rh,) = out.hours
    assert rh.share_above is None and rh.episode and rh.reporting == 3
    assert [d.action for d in out.decisions] == ["suppressed"]
    assert out.dispatch == []


def test_level1_dispatch_gives_the_episode_one_task_of_the_parent_grid() -> None:
    lg, rs, st = setup("level1")
    first = hour(lg, rs, st, H0, haze())
    assert first.dispatch == []  # one hour above the share does not open it (open_hours = 2)
    opened = hour(lg, rs, st, H0 + 1, haze())
    ((episode, task),) = opened.dispatch
    assert task is not None and (task.grid, task.level, task.parent) == ("L1", 1, None)
    assert episode.rule_id == REGIONAL_RULE and episode.station_id == "R"
    assert episode.opened_at.timestamp() == H0 * 3600.0
    later = []
    for i, station in enumerate(STATIONS):
        lg.add_alarm(st, "R", H0 + 2 + i, alarm(station, H0 + 2 + i), rs, (H0 + 3 + i) * 3600.0)
        later += hour(lg, rs, st, H0 + 2 + i, haze()).dispatch
    assert [a.station_id for a, _ in later] == list(STATIONS)
    assert {t.episode.alarm_id for _, t in later if t is not None} == {episode.alarm_id}
    assert all(t is not None and t.grid == "L1" for _, t in later)


def test_a_local_excess_run_broken_by_a_missing_value_starts_again() -> None:
    lg, rs, st = setup()
    bg = {"B": 40.0, "C": 40.0}
    assert not hour(lg, rs, st, H0, {"A": 120.0, **bg}).alarms  # 1 hour in excess
    assert not hour(lg, rs, st, H0 + 1, {"A": None, **bg}).alarms  # no value: the run is broken
    assert not hour(lg, rs, st, H0 + 2, {"A": 120.0, **bg}).alarms  # 1 hour again
    out = hour(lg, rs, st, H0 + 3, {"A": 120.0, **bg})
    (opened,) = out.alarms
    assert (opened.kind, opened.station_id, opened.rule_id) == ("opened", "A", "pm25_local")
    assert opened.window_start.timestamp() == (H0 + 3) * 3600.0
    assert [(d.station_id, d.action) for d in out.decisions] == [("A", "level3")]
    assert [a.alarm_id for a, task in out.dispatch if task is None] == [opened.alarm_id]
    # clear_hours = 2 calm hours clear it: the cleared event the task replay closes tasks on
    assert not hour(lg, rs, st, H0 + 4, {"A": 45.0, **bg}).alarms
    (cleared,) = hour(lg, rs, st, H0 + 5, {"A": 45.0, **bg}).alarms
    assert (cleared.kind, cleared.alarm_id) == ("cleared", opened.alarm_id)


def test_a_local_source_inside_the_haze_still_goes_to_its_level3_grid() -> None:
    lg, rs, st = setup("level2")
    decided: list[tuple[str, str, str]] = []
    for i in range(4):  # A far above a hazy region: regional episode and local excess at once
        lg.add_alarm(st, "R", H0 + i, alarm("B", H0 + i), rs, (H0 + i + 1) * 3600.0)
        out = hour(lg, rs, st, H0 + i, {"A": 400.0, "B": 120.0, "C": 110.0})
        decided += [(d.station_id, d.rule_id, d.action) for d in out.decisions]
    assert ("A", "pm25_local", "level3") in decided
    assert decided.count(("B", "pm25_1h", "region")) == 3  # from the hour the episode opened
    assert decided[0] == ("B", "pm25_1h", "level3")  # before it opened
