"""Unit tests of detection (airgrid.domain.detect) and its rule catalogue (airgrid.domain.rules)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airgrid.config.settings import DATA_DIR
from airgrid.domain.detect import Bucket, Episode, StationState, evaluate, hour_of
from airgrid.domain.rules import ExceedanceRule, RuleCatalogue, RulesError, load_rules
from airgrid.models.alarms import AlarmEvent
from airgrid.models.readings import Reading

NOW = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # the injected wall clock
DAY = datetime(2026, 3, 1, tzinfo=UTC)
RULE = ExceedanceRule(id="pm25_1h", pollutant="pm25", threshold=75, clear_below=60, clear_hours=2)
RULES = RuleCatalogue(rules=(RULE,))


def at(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return DAY + timedelta(hours=hour, minutes=minute, seconds=second)


def reading(end: datetime, pm25: float, interval_s: int = 3600, **kw: object) -> Reading:
    return Reading.model_validate(
        {"station_id": "ST001", "observed_at": end, "interval_s": interval_s, "values": {"pm25": pm25}, **kw}
    )


def feed(
    readings: list[Reading], state: StationState | None = None, rules: RuleCatalogue = RULES
) -> tuple[StationState, list[AlarmEvent], list[str]]:
    state = state or StationState()
    alarms: list[AlarmEvent] = []
    outcomes: list[str] = []
    for r in readings:
        state, out, outcome = evaluate(state, r, rules, NOW)
        alarms += out
        outcomes.append(outcome)
    return state, alarms, outcomes


def cur(state: StationState) -> Bucket:
    """The bucket of the newest hour."""
    assert state.current is not None
    return state.buckets[state.current]


def hourly(*values: float, start: int = 1) -> list[Reading]:
    """One full-hour reading per value, the first ending at ``start`` o'clock."""
    return [reading(at(start + i), v) for i, v in enumerate(values)]


# --- hours and averages -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("end", "hour"),
    [
        (at(10), at(9)),  # END of the interval: 10:00:00 closes 09:00-10:00
        (at(10, 0, 1), at(10)),
        (at(9, 5), at(9)),
        (at(9, 59, 59), at(9)),
        (datetime(2026, 3, 1, 18, 0, tzinfo=timezone(timedelta(hours=8))), at(9)),  # 10:00 UTC
        (datetime(2026, 3, 1, 0, 0, tzinfo=UTC), datetime(2026, 2, 28, 23, 0, tzinfo=UTC)),
    ],
)
def test_hour_a_reading_belongs_to(end: datetime, hour: datetime) -> None:
    got = hour_of(reading(end, 1))
    assert got == hour and got.utcoffset() == timedelta(0)


def test_hourly_average_is_weighted_by_interval() -> None:
    # 45 min at 100 and 15 min at 20: weighted 80 (alarm), a plain mean would be 60 (no alarm)
    state, alarms, outcomes = feed([reading(at(9, 45), 100, 2700), reading(at(10), 20, 900)])
    assert outcomes == ["accepted", "accepted"]
    assert state.last_hourly == {"pm25": 80.0}
    assert [(a.kind, a.value, a.window_start, a.window_end) for a in alarms] == [
        ("opened", 80.0, at(9), at(10))
    ]


def test_twelve_five_minute_readings_complete_the_hour() -> None:
    values = [70.0] * 11 + [136.0]  # mean 75.5
    readings = [reading(at(9, 5 * (i + 1)), v, 300) for i, v in enumerate(values)]
    state, alarms, _ = feed(readings[:11])
    assert alarms == [] and not cur(state).closed and cur(state).secs == {"pm25": 3300.0}
    state, alarms, _ = feed(readings[11:], state)
    assert cur(state).closed and [(a.kind, a.value) for a in alarms] == [("opened", 75.5)]


@pytest.mark.parametrize(("pieces", "valid"), [(3, True), (2, False)])
def test_an_hour_needs_45_minutes_of_data(pieces: int, valid: bool) -> None:
    """15-min readings: three (45 min) make a valid hour, two (30 min) do not; the hour is
    evaluated when the next hour's first reading arrives."""
    readings = [reading(at(9, 15 * (i + 1)), 100, 900) for i in range(pieces)]
    state, alarms, _ = feed([*readings, reading(at(10, 15), 10, 900)])
    assert bool(alarms) is valid
    assert state.last_hourly == ({"pm25": 100.0} if valid else {})
    assert state.current == int(at(10).timestamp()) // 3600 and cur(state).secs == {"pm25": 900.0}


def test_min_coverage_comes_from_the_catalogue() -> None:
    strict = RuleCatalogue(min_coverage_s=3600, rules=(RULE,))
    readings = [*(reading(at(9, 15 * (i + 1)), 100, 900) for i in range(3)), reading(at(10, 15), 1, 900)]
    assert feed(readings, rules=strict)[1] == []
    assert len(feed(readings)[1]) == 1


@pytest.mark.parametrize(("flag", "counted"), [(f, f in "NS") for f in "NSMCDFBT"])
def test_hj212_flags_keep_bad_data_out_of_averages(flag: str, counted: bool) -> None:
    r = reading(at(10), 500, values={"pm25": 500, "pm10": 40}, flags={"pm25": flag})
    state, alarms, _ = feed([r])
    assert cur(state).closed  # pm10 completes the hour either way
    assert ("pm25" in state.last_hourly) is counted
    assert [a.kind for a in alarms] == (["opened"] if counted else [])


def test_flagged_values_do_not_dilute_the_average() -> None:
    # 45 valid minutes at 100 and 15 flagged minutes at 0: 100 (alarm); counted, 75 (no alarm)
    readings = [reading(at(9, 15 * (i + 1)), 100, 900) for i in range(3)]
    readings += [reading(at(10), 0, 900, flags={"pm25": "M"}), reading(at(10, 15), 1, 900)]
    _, alarms, outcomes = feed(readings)
    assert outcomes == ["accepted"] * 5
    assert [(a.kind, a.value, a.window_start) for a in alarms] == [("opened", 100.0, at(9))]


# --- episodes -----------------------------------------------------------------------------------


def test_one_alarm_per_episode_with_hysteresis() -> None:
    # above, above, between (keeps open), calm, above again, calm, calm -> cleared; nothing in
    # between is material (no new worst value twice the first), so no `updated`
    values = (100, 90, 70, 50, 80, 55, 60)
    _, alarms, _ = feed(hourly(*values))
    assert [(a.kind, a.value, a.window_start, a.change) for a in alarms] == [
        ("opened", 100.0, at(0), None),
        ("cleared", 60.0, at(6), None),
    ]
    assert {a.alarm_id for a in alarms} == {"ST001:pm25_1h:20260301T0000Z"}
    assert [a.event_id for a in alarms] == [f"ST001:pm25_1h:20260301T0000Z:{i}" for i in (1, 2)]
    assert all(a.opened_at == at(0) and a.emitted_at == NOW for a in alarms)


def test_a_value_between_clear_below_and_threshold_resets_the_calm_count() -> None:
    state, alarms, _ = feed(hourly(100, 50, 70, 50))
    assert [a.kind for a in alarms] == ["opened"]
    assert state.episodes["pm25_1h"].calm == 1
    _, more, _ = feed(hourly(40, start=5), state)
    assert [a.kind for a in more] == ["cleared"]


def test_a_new_episode_after_clearing_gets_a_new_id() -> None:
    _, alarms, _ = feed(hourly(100, 10, 10, 100))
    assert [(a.kind, a.alarm_id) for a in alarms] == [
        ("opened", "ST001:pm25_1h:20260301T0000Z"),
        ("cleared", "ST001:pm25_1h:20260301T0000Z"),
        ("opened", "ST001:pm25_1h:20260301T0300Z"),
    ]


def test_alarm_event_fields() -> None:
    rule = ExceedanceRule(
        id="r", pollutant="pm25", threshold=75, clear_below=60, severity="critical", route="operations"
    )
    (a,) = feed([reading(at(10), 123.4567)], rules=RuleCatalogue(rules=(rule,)))[1]
    assert (a.rule_id, a.pollutant, a.severity, a.route, a.threshold, a.period) == (
        "r",
        "pm25",
        "critical",
        "operations",
        75.0,
        "1h",
    )
    assert a.value == 123.457 and a.reading_observed_at == at(10) and a.station_id == "ST001"


def test_two_rules_on_one_pollutant_open_two_episodes() -> None:
    severe = ExceedanceRule(id="severe", pollutant="pm25", threshold=150, clear_below=115)
    _, alarms, _ = feed(hourly(200), rules=RuleCatalogue(rules=(RULE, severe)))
    assert sorted((a.rule_id, a.kind) for a in alarms) == [("pm25_1h", "opened"), ("severe", "opened")]


@st.composite
def hour_values(draw: st.DrawFn) -> list[float]:
    return draw(st.lists(st.sampled_from([10.0, 59.0, 60.0, 61.0, 75.0, 76.0, 200.0]), max_size=30))


@given(hour_values(), st.integers(1, 3), st.sampled_from([0.0, 3.0, 24.0]), st.sampled_from([1.0, 2.0]))
def test_episodes_follow_the_reference_model(
    values: list[float], clear_hours: int, heartbeat: float, factor: float
) -> None:
    """opened once; updated only for a new worst value above factor x the worst value sent, or
    as a heartbeat when nothing was sent for ``heartbeat`` hours while the condition holds;
    cleared after ``clear_hours`` calm hours."""
    rule = RULE.model_copy(update={"clear_hours": clear_hours})
    rules = RuleCatalogue(rules=(rule,), updates={"worse_factor": factor, "heartbeat_hours": heartbeat})
    _, alarms, _ = feed(hourly(*values), rules=rules)
    expected: list[tuple[str, float, str | None]] = []
    open_, calm, worst, sent = False, 0, 0.0, 0
    for hour, v in enumerate(values):
        if v > 75:
            if not open_:
                expected.append(("opened", v, None))
                worst, sent = v, hour
            elif v > worst * factor:
                expected.append(("updated", v, "worse"))
                worst, sent = v, hour
            elif heartbeat and hour - sent >= heartbeat:
                expected.append(("updated", v, "heartbeat"))
                sent = hour
            open_, calm = True, 0
        elif open_ and v <= 60:
            calm += 1
            if calm == clear_hours:
                expected.append(("cleared", v, None))
                open_, calm = False, 0
        elif open_:
            calm = 0
    assert [(a.kind, a.value, a.change) for a in alarms] == expected
    # replay from scratch: same ids
    assert [a.event_id for a in feed(hourly(*values), rules=rules)[1]] == [a.event_id for a in alarms]


# --- duplicates and late data -------------------------------------------------------------------


def test_duplicate_reading_is_ignored() -> None:
    first = reading(at(9, 5), 100, 300)
    state, _, outcomes = feed([first, first, reading(at(9, 5), 999, 300)])
    assert outcomes == ["accepted", "duplicate", "duplicate"]
    assert cur(state).secs == {"pm25": 300.0} and cur(state).sums == {"pm25": 30_000.0}


def test_duplicate_with_another_utc_offset_is_still_a_duplicate() -> None:
    beijing = timezone(timedelta(hours=8))
    same = datetime(2026, 3, 1, 17, 5, tzinfo=beijing)  # 09:05 UTC
    state, _, outcomes = feed([reading(at(9, 5), 100, 300), reading(same, 100, 300)])
    assert outcomes == ["accepted", "duplicate"] and cur(state).secs == {"pm25": 300.0}


def test_duplicate_of_a_completed_hour_emits_nothing_twice() -> None:
    _, alarms, outcomes = feed([reading(at(10), 100), reading(at(10), 100)])
    assert outcomes == ["accepted", "duplicate"] and len(alarms) == 1


def test_late_readings_are_counted_and_change_nothing() -> None:
    state, _, _ = feed(hourly(100, 100))
    before = state.to_json()
    state, more, outcomes = feed([reading(at(0, 30), 500, 300)], state)  # an hour already left
    assert outcomes == ["late"] and more == []
    assert state.to_json() == before  # a reading beyond the grace leaves the state untouched


def test_a_reading_after_its_hour_completed_is_folded_in_and_the_hour_reevaluated() -> None:
    # with no grace, an hour stays open to late readings until the station's clock leaves it
    state, alarms, outcomes = feed([reading(at(10), 70), reading(at(9, 30), 500, 300)])
    assert outcomes == ["accepted", "late_folded"]
    assert state.last_hourly == {"pm25": pytest.approx((70 * 3600 + 500 * 300) / 3900, abs=1e-3)}
    assert [(a.kind, a.window_start) for a in alarms] == [("opened", at(9))]


# --- state round trip ---------------------------------------------------------------------------

aware = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - bounds of st.datetimes are naive by design
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5))]),
)
floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
pollutant_map = st.dictionaries(st.sampled_from(["pm25", "pm10", "so2", "no2", "co", "o3"]), floats)
hours = st.integers(0, 10**6)
buckets = st.builds(Bucket, pollutant_map, pollutant_map, st.lists(floats, max_size=12), st.booleans())
episodes = st.builds(Episode, st.text(max_size=40), floats, st.integers(0, 10**6), floats, st.integers(0, 48))
states = st.builds(
    StationState,
    last_obs=st.none() | floats,
    last_arrival=st.none() | floats,
    current=st.none() | hours,
    buckets=st.dictionaries(hours, buckets, max_size=3),
    ring=st.dictionaries(hours, pollutant_map, max_size=5),
    flat=st.dictionaries(st.sampled_from(["pm25", "co"]), st.tuples(floats, floats).map(list)),
    episodes=st.dictionaries(st.text(max_size=20), episodes, max_size=3),
    day_done=st.none() | hours,
    source=st.none() | st.tuples(st.integers(0, 63), st.integers(0, 2**40)).map(list),
)


@given(states)
def test_station_state_round_trips_through_json(state: StationState) -> None:
    text = json.dumps(state.to_json())
    assert StationState.from_json(json.loads(text)) == state


def test_state_after_real_readings_round_trips_and_resumes_identically() -> None:
    readings = hourly(100, 90, 50)
    state, _, _ = feed(readings)
    restored = StationState.from_json(json.loads(json.dumps(state.to_json())))
    assert restored == state
    assert feed(hourly(40, start=4), restored)[1] == feed(hourly(40, start=4), state)[1]


def test_a_reading_at_or_before_the_applied_offset_is_a_replay() -> None:
    state = StationState.from_json(json.loads(json.dumps(StationState(source=[2, 40]).to_json())))
    assert state.replays(2, 40) and state.replays(2, 0)
    assert not state.replays(2, 41)
    assert not state.replays(3, 10)  # another partition (the topic was repartitioned): not provable
    assert not StationState().replays(0, 0)


@pytest.mark.parametrize("raw", [None, {}])
def test_empty_state_from_json(raw: dict[str, object] | None) -> None:
    assert StationState.from_json(raw) == StationState()


# --- rule catalogue -----------------------------------------------------------------------------


def test_shipped_rules_load() -> None:
    cat = load_rules(DATA_DIR / "rules.toml")
    assert cat.min_coverage_s == 2700
    first = [r for r in cat.rules if isinstance(r, ExceedanceRule) and r.period == "1h"][:2]
    assert [(r.id, r.kind, r.threshold, r.clear_below, r.severity) for r in first] == [
        ("pm25_1h_exceedance", "exceedance", 75.0, 60.0, "major"),  # no `kind`: an exceedance rule
        ("pm25_1h_severe", "exceedance", 150.0, 115.0, "critical"),
    ]
    ids = [r.id for r in cat.rules]
    assert len(ids) == len(set(ids))
    # the data-quality kinds never page grid workers
    assert {r.route for r in cat.rules if r.kind in ("silent", "flatline", "impossible")} == {"operations"}


RULE_TOML = '[[rules]]\nid = "{id}"\npollutant = "pm25"\nthreshold = 75.0\nclear_below = {below}\n'


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[[rules]\n", "rules.toml"),
        (
            RULE_TOML.format(id="a", below=80.0),
            "rule a: clear_below 80.0 is above threshold 75.0",
        ),
        (RULE_TOML.format(id="a", below=1) * 2, "duplicate rule id(s): a"),
        (RULE_TOML.format(id="a", below=1).replace("pm25", "dust"), "rule a: pollutant: Input should be"),
        (RULE_TOML.format(id="A b", below=1), "rule A b: id: String should match"),
        (RULE_TOML.format(id="a", below=1) + "clear_hours = 0\n", "rule a: clear_hours"),
        ("min_coverage_s = 4000\n" + RULE_TOML.format(id="a", below=1), "min_coverage_s"),
        ("version = '1'\n", "rules: Field required"),
        (
            RULE_TOML.format(id="a", below=1)
            + '[[rules]]\nid = "bad"\nkind = "impossible"\nranges = { pm25 = 75 }\n',
            "rule bad: ranges.pm25 = 75 is not above the 75 of rule a: that alarm could never fire",
        ),
    ],
)
def test_load_rules_errors_name_the_field(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RulesError) as err:
        load_rules(path)
    assert str(path) in str(err.value) and needle in str(err.value)


def test_load_rules_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match=r"nothing\.toml"):
        load_rules(tmp_path / "nothing.toml")


def test_a_pinned_gb3095_version_needs_only_its_own_limits(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    rule = '[[rules]]\nid = "pm25_day"\npollutant = "pm25"\nperiod = "day"\nlimit = "gb3095"\n'
    limits = '[limits."gb3095-2012"]\npm25 = { "24h" = 75 }\n'
    path.write_text('gb3095 = "gb3095-2012"\n' + limits + rule, encoding="utf-8")
    assert load_rules(path).gb3095_versions() == ("gb3095-2012",)
    path.write_text(limits + rule, encoding="utf-8")  # by date: all three versions are needed
    with pytest.raises(RulesError, match="no gb3095-2026 24h limit for pm25"):
        load_rules(path)
