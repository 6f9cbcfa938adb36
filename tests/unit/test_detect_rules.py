"""Rule kinds of the detection engine, with an injected clock: averaging periods and their validity,
GB 3095 versions, AQI on alarms, sustained, sudden rise, silence, flat-line, impossible values,
late grace, warning profiles and bounded state."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from airgrid.config.settings import DATA_DIR
from airgrid.domain import aqi
from airgrid.domain.detection import engine
from airgrid.domain.detection.compiled import RuleBook, RuleSet, compile_rules
from airgrid.domain.detection.hour import HourView, daily_result, day_hours
from airgrid.domain.detection.state import RING_HOURS, StationState
from airgrid.domain.rules import load_rules, parse_rules
from airgrid.models.alarms import AlarmEvent
from airgrid.models.readings import Reading

NOW = datetime(2027, 1, 1, tzinfo=UTC)  # the injected wall clock (stamps emitted_at)
T0 = datetime(2025, 12, 1, 16, tzinfo=UTC)  # 2025-12-02 00:00 China time


def cat(*rules: dict[str, Any], **top: Any) -> Any:
    return parse_rules({"rules": list(rules), **top})


LIMITS = load_rules(DATA_DIR / "rules.toml").limits


def rs_of(*rules: dict[str, Any], grace_s: float = 0, level: Any = "none", **top: Any) -> RuleSet:
    top.setdefault("limits", LIMITS)
    return compile_rules(cat(*rules, **top), level, grace_s=grace_s)


def rd(end: datetime, interval_s: int = 3600, station: str = "ST001", **values: float) -> Reading:
    return Reading.model_validate(
        {"station_id": station, "observed_at": end, "interval_s": interval_s, "values": values}
    )


def run(
    readings: list[Reading], rs: RuleSet, state: StationState | None = None, now: datetime = NOW
) -> tuple[StationState, list[AlarmEvent], list[str]]:
    state = state or StationState()
    events: list[AlarmEvent] = []
    outcomes: list[str] = []
    for r in readings:
        state, out, outcome = engine.evaluate(state, r, rs, now.timestamp())
        events += out
        outcomes.append(outcome)
    return state, events, outcomes


def hours(
    start: datetime, values: list[float | None], pollutant: str = "pm25", **extra: float
) -> list[Reading]:
    """One full-hour reading per value (None: no reading that hour), the first ending at start+1h."""
    return [
        rd(start + timedelta(hours=i + 1), **{pollutant: v}, **extra)
        for i, v in enumerate(values)
        if v is not None
    ]


def kinds(events: list[AlarmEvent]) -> list[tuple[str, str]]:
    return [(e.rule_id, e.kind) for e in events]


# --- averaging periods and validity --------------------------------------------------------------

PM25_24H = {"id": "pm25_24h", "pollutant": "pm25", "period": "24h", "threshold": 75, "clear_below": 60}


def test_24h_sliding_average_needs_20_valid_hours() -> None:
    rs = rs_of(PM25_24H)
    _, events, _ = run(hours(T0, [100.0] * 19), rs)
    assert events == []  # 19 valid hours: no 24 h value yet
    _, events, _ = run(hours(T0, [100.0] * 20), rs)
    assert [(e.kind, e.period, e.value) for e in events] == [("opened", "24h", 100.0)]


def test_24h_average_slides_over_gaps_and_counts_only_valid_hours() -> None:
    rs = rs_of(PM25_24H)
    values: list[float | None] = [100.0] * 10 + [None] * 4 + [100.0] * 10  # 20 valid in 24
    _, events, _ = run(hours(T0, values), rs)
    assert [(e.kind, e.window_start) for e in events] == [("opened", T0 + timedelta(hours=23))]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "pm25": st.floats(0, 900, allow_nan=False),
                "o3": st.floats(0, 900, allow_nan=False),
            },
        ),
        min_size=1,
        max_size=80,
    ),
    st.sets(st.integers(0, 79), max_size=10),
    st.integers(0, 23),
)
@example([{"pm25": float(i)} for i in range(40)], {20}, 0)  # a missing hour inside a day
def test_running_windows_equal_a_full_pass(slots: list[dict[str, float]], gaps: set[int], start: int) -> None:
    """The per-station running sums of the 24 h and 8 h windows, slid hour by hour across gaps
    and day boundaries, give the same averages as summing the window afresh."""
    rs = rs_of(PM25_24H)
    ring: dict[int, dict[str, float]] = {}
    windows: dict[Any, Any] = {}
    h0 = 490_000 + start
    for i, vals in enumerate(slots):
        if i in gaps:
            continue  # no hour closed: the next one must not slide from a stale window
        h = h0 + i
        if vals:
            ring[h] = vals
        running = HourView(ring, h, rs, windows)
        fresh = HourView(ring, h, rs)
        for p, n in (("pm25", 24), ("o3", 8), ("pm25", 8)):
            got, want = running.avg(p, n), fresh.avg(p, n)
            assert (got is None) == (want is None), (h, p, n)
            if got is not None and want is not None:
                assert got == pytest.approx(want, rel=1e-9, abs=1e-9), (h, p, n)


# one decimal each, exact sum 1,800.0: an exact 24 h mean of 75.0 (floats sum to 74.99999999999999...)
EXACT_75 = [96.0, 68.7, 50.6, 60.6, 93.8, 101.1, 43.1, 83.0, 43.1, 90.3, 63.2, 101.7]
EXACT_75 += [108.6, 75.4, 109.9, 61.7, 45.4, 82.0, 42.2, 53.8, 68.6, 82.7, 50.9, 123.6]


def test_a_24h_mean_equal_to_the_limit_is_exact_no_exceedance_and_iaqi_100() -> None:
    """GB 3095-2012: the 24 h PM2.5 limit is 75, an average equal to it is no exceedance, and its
    IAQI (HJ 633-2012) is 100, not 101; binary floats sum these 24 values to just off 75."""
    rs = compile_rules(load_rules(DATA_DIR / "rules.toml"))
    start = datetime(2016, 5, 1, tzinfo=UTC)
    readings = hours(start, EXACT_75, pm10=1000.0, so2=5.0, no2=20.0, co=0.5, o3=50.0)
    state, events, _ = run(readings, rs)
    assert sum(EXACT_75) != 1800.0  # the float noise this test is about
    assert [e for e in events if e.rule_id in ("pm25_24h_gb3095", "pm25_day_gb3095")] == []
    h = engine.hour_number(readings[-1].observed_at.timestamp())
    view = HourView(state.ring, h, rs)
    assert view.avg("pm25", 24) == 75.0
    result = view.aqi()
    assert result is not None and result.iaqi["pm25_24h"] == 100


@pytest.mark.parametrize(
    ("values", "mean", "iaqi"),
    [
        ([68.54, 66.62, 64.76, 42.08], 60.5, 100),  # a tie: half to even gives 60, IAQI 100
        ([65.07, 16.06, 21.2, 39.67], 35.5, 52),  # a tie: half to even gives 36, IAQI 52
    ],
)
def test_an_hourly_mean_on_a_rounding_tie_rounds_half_to_even(
    values: list[float], mean: float, iaqi: int
) -> None:
    """HJ 633-2026 rounds the hourly average half to even before the lookup: four 15-minute
    readings whose exact mean is a tie must give the IAQI of the exact mean."""
    rs = compile_rules(load_rules(DATA_DIR / "rules.toml"))
    start = datetime(2026, 5, 1, 2, tzinfo=UTC)
    other = {"pm10": 100.0, "so2": 5.0, "no2": 20.0, "co": 0.5, "o3": 50.0}
    readings = [
        rd(start + timedelta(minutes=15 * (i + 1)), 900, pm25=v, **other) for i, v in enumerate(values)
    ]
    state, _, _ = run(readings, rs)
    h = engine.hour_number(readings[-1].observed_at.timestamp())
    assert state.ring[h]["pm25"] == mean
    result = HourView(state.ring, h, rs).aqi()
    assert result is not None and result.iaqi["pm25_1h"] == iaqi


def test_shipped_rules_alarm_on_co_above_its_1h_limit() -> None:
    """CO above the GB 3095 1 h limit (10 mg/m3) is an exceedance for grid workers, not an
    instrument fault: the shipped CO ceiling sits above every CO limit."""
    rs = compile_rules(load_rules(DATA_DIR / "rules.toml"))
    _, events, _ = run(hours(T0, [12.0, 13.5, 24.5], pollutant="co"), rs)
    assert [(e.rule_id, e.kind, e.route, e.value, e.change) for e in events] == [
        ("co_1h_gb3095", "opened", "grid", 12.0, None),
        ("co_1h_gb3095", "updated", "grid", 24.5, "worse"),  # 13.5 is no new worst: not twice 12
    ]


def test_o3_8h_needs_6_valid_hours() -> None:
    rule = {"id": "o3_8h", "pollutant": "o3", "period": "8h", "threshold": 160}
    rs = rs_of(rule)
    _, events, _ = run(hours(T0, [200.0] * 5, pollutant="o3"), rs)
    assert events == []
    _, events, _ = run(hours(T0, [200.0, None, None, 200.0, 200, 200, 200, 200], pollutant="o3"), rs)
    assert [(e.kind, e.value) for e in events] == [("opened", 200.0)]


def test_calendar_day_is_the_china_day_and_needs_20_hours() -> None:
    rule = {"id": "pm25_day", "pollutant": "pm25", "period": "day", "limit": "gb3095"}
    rs = rs_of(rule)
    # China day 2025-12-02 = 16:00Z Dec 1 .. 16:00Z Dec 2; 24 hours at 80 (> 75, GB 3095-2012)
    _, events, _ = run(hours(T0, [80.0] * 24), rs)
    assert [(e.kind, e.period, e.window_start, e.window_end, e.value, e.threshold) for e in events] == [
        ("opened", "day", T0, T0 + timedelta(days=1), 80.0, 75.0)
    ]
    assert events[0].aqi is not None and events[0].aqi_standard == "hj633-2012"
    short: list[float | None] = [80.0] * 19 + [None] * 5  # 19 valid hours: no day value
    assert run(hours(T0, short), rs)[1] == []


@pytest.mark.parametrize(("pollutant", "value"), [("so2", 160.0), ("no2", 90.0), ("co", 4.5)])
def test_shipped_rules_cover_the_gb3095_24h_limits_of_so2_no2_and_co(pollutant: str, value: float) -> None:
    rs = compile_rules(load_rules(DATA_DIR / "rules.toml"))
    _, events, _ = run(hours(T0, [value] * 24, pollutant=pollutant), rs)
    day = [(e.rule_id, e.kind, e.value, e.window_start) for e in events if e.period == "day"]
    assert day == [(f"{pollutant}_day_gb3095", "opened", value, T0)]


@pytest.mark.parametrize(
    ("start", "limit"),
    [
        (datetime(2030, 12, 29, 16, tzinfo=UTC), 60.0),  # 2030-12-30, China: 2026 transitional
        (datetime(2030, 12, 31, 16, tzinfo=UTC), 50.0),  # 2031-01-01, China: 2026 final
    ],
)
def test_the_gb3095_2026_final_limits_apply_from_2031(start: datetime, limit: float) -> None:
    rs = compile_rules(load_rules(DATA_DIR / "rules.toml"))
    _, events, _ = run(hours(start, [55.0] * 24), rs)
    day = [(e.rule_id, e.threshold) for e in events if e.rule_id == "pm25_day_gb3095"]
    assert day == ([("pm25_day_gb3095", limit)] if limit < 55.0 else [])
    day_rule = next(r for r in rs.daily if r.id == "pm25_day_gb3095")
    assert day_rule.threshold(start.timestamp()) == limit


def test_a_day_event_carries_the_daily_aqi_not_the_last_hour_s() -> None:
    """23 hours at 70 then one at 300 (2026-06-01, China): the calendar-day mean 79.6 is above the
    GB 3095-2026 limit of 60; its event must carry the day's AQI (HJ 633-2026, PM2.5 24 h 80:
    IAQI 119), not the real-time AQI of the last hour (300: IAQI 350)."""
    rs = compile_rules(load_rules(DATA_DIR / "rules.toml"))
    start = datetime(2026, 5, 31, 16, tzinfo=UTC)
    _, events, _ = run(hours(start, [70.0] * 23 + [300.0]), rs)
    (day,) = [e for e in events if e.rule_id == "pm25_day_gb3095"]
    assert (day.value, day.threshold, day.window_start, day.window_end) == (
        79.583,
        60.0,
        start,
        start + timedelta(days=1),
    )
    assert (day.aqi, day.aqi_standard, day.iaqi) == (119, "hj633-2026", {"pm25_24h": 119})
    hourly = next(e for e in events if e.rule_id == "pm25_1h_severe")
    assert hourly.aqi == 350  # the hour's own event keeps the real-time AQI


def test_a_day_whose_last_hour_is_missing_is_evaluated_at_the_next_hour() -> None:
    rule = {"id": "pm25_day", "pollutant": "pm25", "period": "day", "limit": "gb3095"}
    values: list[float | None] = [80.0] * 23 + [None, 10.0]
    _, events, _ = run(hours(T0, values), rs_of(rule))
    assert [(e.kind, e.window_start) for e in events] == [("opened", T0)]


@pytest.mark.parametrize(
    ("start", "threshold", "fires"),
    [
        (datetime(2026, 2, 26, 16, tzinfo=UTC), 75.0, False),  # China 2026-02-27: GB 3095-2012
        (datetime(2026, 2, 28, 16, tzinfo=UTC), 60.0, True),  # China 2026-03-01: GB 3095-2026
    ],
)
def test_gb3095_limit_follows_the_reading_date(start: datetime, threshold: float, fires: bool) -> None:
    rule = {"id": "pm25_day", "pollutant": "pm25", "period": "day", "limit": "gb3095"}
    _, events, _ = run(hours(start, [70.0] * 24), rs_of(rule))
    assert bool(events) is fires
    if fires:
        assert events[0].threshold == threshold and events[0].aqi_standard == "hj633-2026"


def test_gb3095_version_can_be_pinned() -> None:
    rule = {"id": "pm25_day", "pollutant": "pm25", "period": "day", "limit": "gb3095"}
    start = datetime(2026, 5, 1, 16, tzinfo=UTC)
    assert run(hours(start, [70.0] * 24), rs_of(rule, gb3095="gb3095-2012"))[1] == []


# --- AQI on alarms and the AQI rule --------------------------------------------------------------

FULL = {"pm10": 150.0, "so2": 10.0, "no2": 40.0, "co": 1.0, "o3": 50.0}


def test_alarm_carries_the_real_time_aqi_of_its_hour_2026() -> None:
    start = datetime(2026, 6, 1, tzinfo=UTC)
    rule = {"id": "pm25_1h", "pollutant": "pm25", "threshold": 75}
    _, (e,), _ = run([rd(start + timedelta(hours=1), pm25=120.0, **FULL)], rs_of(rule))
    expected = aqi.hourly_aqi({"pm25": 120, **FULL}, aqi.Standard.HJ633_2026)
    assert (e.aqi, e.aqi_standard, e.category, e.category_level) == (
        158,
        "hj633-2026",
        "Moderately polluted",
        4,
    )
    assert e.aqi == expected.aqi and e.iaqi == expected.iaqi and e.primary == ["pm25_1h"]


def test_alarm_aqi_2012_uses_the_24h_pm_average() -> None:
    rule = {"id": "pm25_1h", "pollutant": "pm25", "threshold": 75}
    readings = [rd(T0 + timedelta(hours=i + 1), pm25=50.0 if i < 20 else 200.0, **FULL) for i in range(21)]
    _, events, _ = run(readings, rs_of(rule))
    (e,) = events
    pm25_24h = (50.0 * 20 + 200.0) / 21
    expected = aqi.hourly_aqi(
        {"so2": 10, "no2": 40, "co": 1, "o3": 50},
        aqi.Standard.HJ633_2012,
        pm25_24h=pm25_24h,
        pm10_24h=150,
        o3_8h=50,
    )
    assert e.aqi_standard == "hj633-2012" and e.aqi == expected.aqi and e.iaqi == expected.iaqi


def test_epa_standard_by_setting() -> None:
    rule = {"id": "pm25_1h", "pollutant": "pm25", "threshold": 75}
    rs = compile_rules(cat(rule), aqi_standard="epa-2024")
    _, events, _ = run(hours(T0, [100.0, 120.0, 230.0]), rs)
    e = events[-1]  # NowCast needs 2 of the last 3 hours; 230 is a new worst (over 2 x 100)
    assert e.aqi_standard == "epa-2024" and e.category is not None and e.aqi is not None and e.aqi > 150


def test_aqi_category_rule_opens_at_the_level_and_clears_below_it() -> None:
    rule = {"id": "aqi5", "kind": "aqi_category", "min_level": 5, "clear_hours": 1}
    start = datetime(2026, 6, 1, tzinfo=UTC)  # 2026: real-time PM from the 1 h value
    values = [100, 160, 200, 240, 300, 200, 80]
    readings = [rd(start + timedelta(hours=i + 1), pm25=v, **FULL) for i, v in enumerate(values)]
    _, events, _ = run(readings, rs_of(rule))
    assert [(e.kind, e.value, e.category_level, e.change) for e in events] == [
        ("opened", 210.0, 5, None),
        # 250 and 290 (level 5) are no material change; level 6 is a worse category
        ("updated", 350.0, 6, "category"),
        # back to level 5 is not worse: nothing until the condition ends
        ("cleared", 119.0, 3, None),
    ]


# --- sustained, sudden rise ----------------------------------------------------------------------


def test_sustained_exceedance_needs_n_consecutive_hours() -> None:
    rule = {"id": "sus", "kind": "sustained", "pollutant": "pm25", "threshold": 115, "hours": 3}
    _, events, _ = run(hours(T0, [120, 120, 100, 120, 120, 120, 50]), rs_of(rule))
    assert [(e.kind, e.window_start) for e in events] == [
        ("opened", T0 + timedelta(hours=5)),
        ("cleared", T0 + timedelta(hours=6)),
    ]


def test_sudden_rise_against_the_station_baseline() -> None:
    rule = {
        "id": "rise",
        "kind": "sudden_rise",
        "pollutant": "pm25",
        "factor": 3,
        "min_rise": 75,
        "baseline_hours": 12,
        "min_baseline_hours": 6,
        "clear_factor": 1.5,
    }
    # baseline 30: 90 is 3x but only +60 (no); 120 is 4x and +90 (yes); 40 < 1.5 x baseline clears
    _, events, _ = run(hours(T0, [30.0] * 12 + [90.0, 30.0, 130.0, 40.0]), rs_of(rule))
    assert [(e.kind, e.value) for e in events] == [("opened", 130.0), ("cleared", 40.0)]
    assert events[0].threshold == pytest.approx(
        max(3 * (30 * 11 + 90) / 12, (30 * 11 + 90) / 12 + 75), abs=1e-3
    )
    assert run(hours(T0, [None] * 10 + [30.0] * 3 + [300.0]), rs_of(rule))[1] == []  # baseline too short


# --- data quality --------------------------------------------------------------------------------

SILENT = {"id": "silent", "kind": "silent", "after_s": 1800}


def test_silence_fires_without_a_reading_and_clears_on_the_next() -> None:
    rs = rs_of(SILENT)
    last = T0 + timedelta(hours=1)
    state, _, _ = run([rd(last, pm25=10.0)], rs, now=last)
    assert engine.check_silence(state, "ST001", rs, (last + timedelta(minutes=29)).timestamp()) == []
    (e,) = engine.check_silence(state, "ST001", rs, (last + timedelta(minutes=31)).timestamp())
    assert (e.kind, e.route, e.rule_id, e.pollutant, e.value, e.threshold) == (
        "opened",
        "operations",
        "silent",
        None,
        31 * 60.0,
        1800.0,
    )
    assert e.opened_at == last + timedelta(minutes=30) and e.window_start == last
    assert engine.check_silence(state, "ST001", rs, (last + timedelta(hours=5)).timestamp()) == []  # once
    state, events, _ = run(
        [rd(last + timedelta(hours=6), pm25=10.0)], rs, state, now=last + timedelta(hours=6)
    )
    assert [(x.kind, x.alarm_id) for x in events] == [("cleared", e.alarm_id)]


def test_silence_needs_both_event_time_and_arrival_quiet() -> None:
    """A replay of old readings arrives now: not silent although its event time is old."""
    rs = rs_of(SILENT)
    state, _, _ = run([rd(T0, pm25=10.0)], rs, now=NOW)
    assert engine.check_silence(state, "ST001", rs, (NOW + timedelta(minutes=10)).timestamp()) == []
    assert len(engine.check_silence(state, "ST001", rs, (NOW + timedelta(minutes=31)).timestamp())) == 1


def test_a_shorter_arrival_quiet_time_judges_a_replayed_station_sooner() -> None:
    rs = rs_of({**SILENT, "arrival_s": 10})
    state, _, _ = run([rd(T0, pm25=10.0)], rs, now=NOW)  # observed long ago, arrived at NOW
    assert engine.check_silence(state, "ST001", rs, (NOW + timedelta(seconds=9)).timestamp()) == []
    assert len(engine.check_silence(state, "ST001", rs, (NOW + timedelta(seconds=11)).timestamp())) == 1
    fresh, _, _ = run([rd(NOW - timedelta(minutes=5), pm25=10.0)], rs, now=NOW)  # recent event time
    assert engine.check_silence(fresh, "ST001", rs, (NOW + timedelta(seconds=60)).timestamp()) == []


FLAT = {
    "id": "flat",
    "kind": "flatline",
    "readings": 4,
    "pollutants": ["pm25"],
    "min_value": 5,
    "clear_hours": 1,
}


def test_flatline_after_n_identical_readings_and_clear_on_change() -> None:
    values = [20.0, 33.0, 33.0, 33.0, 33.0, 33.0, 34.0]
    readings = [rd(T0 + timedelta(minutes=10 * (i + 1)), 600, pm25=v) for i, v in enumerate(values)]
    _, events, _ = run(readings, rs_of(FLAT))
    assert [(e.kind, e.route, e.pollutant, e.period) for e in events] == [
        ("opened", "operations", "pm25", "reading"),  # the same value again is nothing new
        ("cleared", "operations", "pm25", "reading"),
    ]
    low = [rd(T0 + timedelta(minutes=10 * (i + 1)), 600, pm25=3.0) for i in range(8)]
    assert run(low, rs_of(FLAT))[1] == []  # at the detection limit: legitimately constant


IMPOSSIBLE = {"id": "imp", "kind": "impossible", "ranges": {"co": 10.0}, "clear_hours": 1}


def test_pm25_above_pm10_is_impossible_and_kept_out_of_averages() -> None:
    rule = {"id": "pm25_1h", "pollutant": "pm25", "threshold": 75}
    rs = rs_of(IMPOSSIBLE, rule)
    state, events, _ = run([rd(T0 + timedelta(hours=1), pm25=300.0, pm10=100.0, no2=20.0)], rs)
    assert kinds(events) == [("imp", "opened")]
    assert events[0].pollutant == "pm25" and events[0].threshold == 115.0
    assert state.last_hourly == {"no2": 20.0}  # neither PM value trusted
    state, events, _ = run([rd(T0 + timedelta(hours=2), pm25=50.0, pm10=100.0)], rs, state)
    assert kinds(events) == [("imp", "cleared")]


def test_impossible_opens_only_after_n_readings_in_a_row_but_never_averages_them() -> None:
    rule = {"id": "pm25_1h", "pollutant": "pm25", "threshold": 75}
    rs = rs_of({**IMPOSSIBLE, "readings": 3}, rule)
    pm = [(300.0, 100.0), (300.0, 100.0), (50.0, 100.0), (300.0, 100.0), (300.0, 100.0), (300.0, 100.0)]
    state: StationState | None = None
    opened_at: list[int] = []
    for i, (pm25, pm10) in enumerate(pm):
        state, events, _ = run([rd(T0 + timedelta(hours=i + 1), pm25=pm25, pm10=pm10, no2=20.0)], rs, state)
        if pm25 > pm10:
            assert "pm25" not in state.last_hourly  # kept out of the averages from the first
        opened_at += [i for e in events if (e.rule_id, e.kind) == ("imp", "opened")]
    assert opened_at == [5]  # two in a row, then a good reading: the count starts again
    assert state is not None and StationState.from_json(state.to_json()).bad == {"pm25": 3}
    state, events, _ = run([rd(T0 + timedelta(hours=7), pm25=50.0, pm10=100.0)], rs, state)
    assert kinds(events) == [("imp", "cleared")] and state.bad == {}


def test_values_at_the_instrument_ceiling_are_impossible() -> None:
    state, events, _ = run([rd(T0 + timedelta(hours=1), co=10.0, no2=20.0)], rs_of(IMPOSSIBLE))
    assert [(e.pollutant, e.value, e.threshold) for e in events] == [("co", 10.0, 10.0)]
    assert state.last_hourly == {"no2": 20.0}


def test_negative_values_are_impossible_in_the_pure_engine() -> None:
    reading = Reading.model_construct(
        station_id="ST001",
        observed_at=T0 + timedelta(hours=1),
        interval_s=3600,
        values={"pm25": -3.0},
        flags={},
    )
    _, events, _ = run([reading], rs_of(IMPOSSIBLE))
    assert [(e.pollutant, e.threshold) for e in events] == [("pm25", 0.0)]


def test_a_negative_pm10_does_not_condemn_a_valid_pm25() -> None:
    """PM2.5 > PM10 says one of the two is wrong, but a negative PM10 is known to be the wrong one:
    PM2.5 keeps counting and only PM10 is reported."""
    rs = compile_rules(load_rules(DATA_DIR / "rules.toml"))
    state, events, _ = run(hours(T0, [20.0] * 4, pm10=-2.0), rs)
    assert {(e.rule_id, e.pollutant) for e in events} == {("impossible", "pm10")}  # opened, updated
    assert state.last_hourly == {"pm25": 20.0}


def test_negative_values_stay_out_of_averages_without_an_impossible_rule() -> None:
    readings = [
        rd(T0 + timedelta(minutes=30 * i), 1800, pm25=v, no2=20.0) for i, v in ((1, -40.0), (2, 50.0))
    ]
    state, _, _ = run(readings, rs_of(PM25_24H))
    assert state.last_hourly == {"no2": 20.0}  # 30 minutes of valid PM2.5: no hourly value


# --- late grace ----------------------------------------------------------------------------------

PM25_1H = {"id": "pm25_1h", "pollutant": "pm25", "threshold": 75, "clear_below": 60}


def test_a_late_reading_within_grace_is_folded_and_the_hour_reevaluated() -> None:
    rs = rs_of(PM25_1H, grace_s=900)
    five = [rd(T0 + timedelta(minutes=10 * (i + 1)), 600, pm25=70.0) for i in range(5)]  # 50 min: valid
    nxt = rd(T0 + timedelta(hours=1, minutes=10), 600, pm25=10.0)
    state, events, _ = run([*five, nxt], rs)
    assert events == [] and state.ring[int(T0.timestamp()) // 3600] == {"pm25": 70.0}
    late = rd(T0 + timedelta(hours=1), 600, pm25=130.0)  # the hour's last 10 min, 10 min late
    state, events, outcomes = run([late], rs, state)
    assert outcomes == ["late_folded"]
    assert [(e.kind, e.value, e.window_start) for e in events] == [("opened", 80.0, T0)]


def test_a_reading_beyond_grace_is_late_and_leaves_the_state_untouched() -> None:
    rs = rs_of(PM25_1H, grace_s=900)
    state, _, _ = run(hours(T0, [50.0, 50.0, 50.0]), rs)
    before = json.dumps(state.to_json(), sort_keys=True)
    state, events, outcomes = run([rd(T0 + timedelta(minutes=50), 600, pm25=999.0)], rs, state)
    assert outcomes == ["late"] and events == []
    assert json.dumps(state.to_json(), sort_keys=True) == before


def test_duplicates_are_recognised_within_grace() -> None:
    rs = rs_of(PM25_1H, grace_s=7200)
    readings = hours(T0, [100.0, 90.0])
    _, events, outcomes = run([*readings, readings[0]], rs)
    assert outcomes == ["accepted", "accepted", "duplicate"] and kinds(events) == [("pm25_1h", "opened")]


def test_state_stays_bounded_over_weeks() -> None:
    rs = compile_rules(load_rules(DATA_DIR / "rules.toml"), grace_s=900)
    readings = [
        rd(T0 + timedelta(minutes=10 * (i + 1)), 600, pm25=30 + i % 7, pm10=60.0 + i % 5, o3=40.0 + i % 3)
        for i in range(6 * 24 * 21)
    ]
    state, _, _ = run(readings, rs)
    assert len(state.ring) <= RING_HOURS + 8 and len(state.buckets) <= 2
    assert len(json.dumps(state.to_json())) < 12_000


# --- warning profiles ----------------------------------------------------------------------------


def test_profiles_tighten_rules_per_warning_level() -> None:
    book = RuleBook(load_rules(DATA_DIR / "rules.toml"))
    none, red = book.for_level("none"), book.for_level("red")
    by_id = {r.id: r for r in red.hourly}
    assert {r.id: r for r in none.hourly}["pm25_1h_exceedance"].thr == (75.0, 75.0, 75.0)
    assert by_id["pm25_1h_exceedance"].thr == (52.5, 52.5, 52.5)
    assert by_id["pm25_sustained"].hours == 3  # an override
    assert by_id["aqi_heavy"].min_level == 4  # one level stricter
    _, events, _ = run(hours(T0, [60.0]), red)
    assert ("pm25_1h_exceedance", "opened") in kinds(events) and events[0].warning_level == "red"
    assert ("pm25_1h_exceedance", "opened") not in kinds(run(hours(T0, [60.0]), none)[1])


def test_rules_active_only_under_some_levels() -> None:
    rule = {**PM25_1H, "levels": ["orange", "red"]}
    c = cat(rule)
    assert compile_rules(c, "none").hourly == () and len(compile_rules(c, "orange").hourly) == 1


def test_every_event_of_the_shipped_rules_is_a_valid_message() -> None:
    """Events are built without validation (speed); they must still be what the schema allows."""
    T26 = datetime(2026, 6, 1, tzinfo=UTC)  # HJ 633-2026: real-time PM from the 1 h value
    rs = compile_rules(load_rules(DATA_DIR / "rules.toml"), grace_s=900)
    values = [30.0] * 30 + [160.0, 200.0, 320.0, 400.0, 380.0, 250.0, 160.0] + [20.0] * 30
    readings = [
        rd(T26 + timedelta(hours=i + 1), pm25=v, pm10=v * 1.4, o3=50.0 + i % 5) for i, v in enumerate(values)
    ]
    readings += [rd(T26 + timedelta(hours=80 + i), pm25=300.0, pm10=50.0, co=12.0) for i in range(3)]
    state, events, _ = run(readings, rs)
    events += engine.check_silence(state, "ST001", rs, (NOW + timedelta(hours=2)).timestamp())
    assert {e.rule_id for e in events} >= {"pm25_1h_severe", "aqi_severe", "impossible", "station_silent"}
    assert ("updated", "worse") in {(e.kind, e.change) for e in events}
    for e in events:
        checked = AlarmEvent.model_validate_json(e.model_dump_json())
        assert checked == e
        # built with models.common.trusted: every field, in field order (the JSON follows it)
        assert list(e.__dict__) == list(AlarmEvent.model_fields)
        assert e.model_dump_json() == checked.model_dump_json()
        assert e.model_fields_set == checked.model_fields_set


def test_the_daily_o3_8h_maximum_takes_only_windows_inside_the_day() -> None:
    """HJ 663: the O3 8 h daily maximum is over the windows ending at 08:00 ... 24:00; a high
    evening the day before must not leak into the next day through windows that start in it."""
    rs = compile_rules(load_rules(DATA_DIR / "rules.toml"))
    day = 20600  # a China calendar day in 2026
    ring = {h: {"o3": 300.0} for h in day_hours(day - 1)}
    ring |= {h: {"o3": 100.0} for h in day_hours(day)}
    _, result = daily_result(ring, day, rs)
    assert result is not None and result.iaqi == {"o3_8h": 50}  # 100 ug/m3 over 8 h: IAQI 50
