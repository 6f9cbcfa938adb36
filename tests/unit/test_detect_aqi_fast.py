"""The rule engine's float AQI path gives exactly the Decimal module's answers; warnings board;
bad input (units, unknown pollutants) is refused with a clear reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airgrid.domain import aqi
from airgrid.domain.detection import fastaqi
from airgrid.domain.detection.compiled import compile_rules
from airgrid.domain.detection.state import StationState
from airgrid.domain.detection.warnings import WarningBoard
from airgrid.domain.intake import Limits, Rejection, parse_reading
from airgrid.domain.rules import parse_rules
from airgrid.models.warnings import PollutionWarning
from airgrid.stages.ingest import silence_due

HJ = (aqi.Standard.HJ633_2012, aqi.Standard.HJ633_2026)
INDICATORS_OF = {
    s: [i for i in aqi.INDICATORS if not (s is HJ[0] and i in ("pm25_1h", "pm10_1h"))] for s in HJ
}


@st.composite
def case(draw: st.DrawFn) -> tuple[aqi.Standard, str, float]:
    standard = draw(st.sampled_from(HJ))
    indicator = draw(st.sampled_from(INDICATORS_OF[standard]))
    points = [float(c) for c, _ in aqi.breakpoints(indicator, standard)]
    # values on and next to breakpoints, halves (2026 rounding), and arbitrary floats
    near = st.sampled_from(points).flatmap(
        lambda c: st.sampled_from([c, c + 0.5, c - 0.5, c + 1e-9, c - 1e-9, c + 0.05, c + 0.25, c + 0.35])
    )
    conc = draw(near.filter(lambda c: c >= 0) | st.floats(0, points[-1] * 1.2, allow_nan=False))
    return standard, indicator, conc


@settings(max_examples=3000)
@given(case())
def test_fast_iaqi_equals_the_exact_module(c: tuple[aqi.Standard, str, float]) -> None:
    standard, indicator, conc = c
    assert fastaqi.iaqi(indicator, conc, standard) == aqi.iaqi(indicator, conc, standard)


@pytest.mark.parametrize("standard", HJ)
@pytest.mark.parametrize("indicator", ["pm25_24h", "so2_1h", "co_1h", "o3_8h", "no2_1h"])
def test_fast_iaqi_on_every_breakpoint(standard: aqi.Standard, indicator: str) -> None:
    for conc, _ in aqi.breakpoints(indicator, standard):
        for c in (float(conc), float(conc) + 0.5, float(conc) + 0.05):
            assert fastaqi.iaqi(indicator, c, standard) == aqi.iaqi(indicator, c, standard), c


values = st.floats(0, 900, allow_nan=False, allow_infinity=False)


@settings(max_examples=500)
@given(
    st.sampled_from(HJ),
    st.fixed_dictionaries(
        {},
        optional={
            p: values
            for p in (
                "pm25_1h",
                "pm10_1h",
                "pm25_24h",
                "pm10_24h",
                "so2_1h",
                "so2_24h",
                "no2_1h",
                "o3_1h",
                "o3_8h",
            )
        }
        | {"co_1h": st.floats(0, 40, allow_nan=False)},
    ),
)
def test_fast_hourly_aqi_equals_the_exact_module(standard: aqi.Standard, concs: dict[str, float]) -> None:
    extra = {k: concs.get(k) for k in ("pm25_24h", "pm10_24h", "so2_24h", "o3_8h")}
    ones = {k: v for k, v in concs.items() if k.endswith("_1h")}
    if standard is aqi.Standard.HJ633_2012:
        ones = {k: v for k, v in ones.items() if k not in ("pm25_1h", "pm10_1h")}
    expected = aqi.hourly_aqi(ones, standard, **extra)
    got = fastaqi.hourly({k: v for k, v in concs.items() if k in ones or k in extra}, standard)
    assert got == expected


@settings(max_examples=500)
@given(
    st.sampled_from(HJ),
    st.sampled_from([50, 100, 150, 200, 300]),
    st.fixed_dictionaries(
        {},
        optional={
            p: values
            for p in ("pm25_1h", "pm10_1h", "pm25_24h", "pm10_24h", "so2_1h", "no2_1h", "o3_1h", "o3_8h")
        }
        | {"co_1h": st.floats(0, 40, allow_nan=False)},
    ),
)
def test_the_cheap_aqi_precheck_never_hides_a_level(
    standard: aqi.Standard, level: int, concs: dict[str, float]
) -> None:
    if standard is aqi.Standard.HJ633_2012:
        concs = {k: v for k, v in concs.items() if k not in ("pm25_1h", "pm10_1h")}
    result = fastaqi.hourly(concs, standard)
    if not fastaqi.may_exceed(concs, standard, level):
        assert result.aqi is None or result.aqi <= level


# --- warnings ------------------------------------------------------------------------------------

T = datetime(2026, 12, 1, tzinfo=UTC)


def warning(
    level: str, at: datetime, until: datetime | None = None, city: str = "Urumqi"
) -> PollutionWarning:
    return PollutionWarning.model_validate(
        {"city": city, "level": level, "issued_at": at, "valid_until": until}
    )


def test_warning_board_newest_wins_and_lapses() -> None:
    board = WarningBoard()
    assert board.level("Urumqi", T) == "none"
    assert board.apply(warning("orange", T, T + timedelta(days=2)))
    assert not board.apply(warning("blue", T - timedelta(hours=1)))  # an older issue changes nothing
    assert board.level("Urumqi", T + timedelta(days=1)) == "orange"
    assert board.level("Urumqi", T + timedelta(days=2)) == "none"  # lapsed
    assert board.level("Beijing", T) == "none"
    board.apply(warning("none", T + timedelta(hours=2)))
    assert board.level("Urumqi", T + timedelta(hours=3)) == "none"


# --- silence sweep and bad input -----------------------------------------------------------------


def test_silence_due_reads_the_stored_state_cheaply() -> None:
    rs = compile_rules(parse_rules({"rules": [{"id": "silent", "kind": "silent", "after_s": 600}]}))
    t = T.timestamp()
    assert not silence_due(None, rs, t)
    state = StationState(last_obs=t - 700, last_arrival=t - 700)
    assert silence_due(state.to_json(), rs, t)
    assert not silence_due(StationState(last_obs=t - 700, last_arrival=t - 10).to_json(), rs, t)
    state.episodes["silent"] = state.episodes.get("silent") or __import__(
        "airgrid.domain.detection.state", fromlist=["Episode"]
    ).Episode("x", t)
    assert not silence_due(state.to_json(), rs, t)  # already open


LIMITS = Limits(max_bytes=65536, max_future=timedelta(minutes=5), max_age=timedelta(days=400))


def body(values: str, extra: str = "", at: str = "2026-11-30T10:00:00+00:00") -> bytes:
    return (
        f'{{"schema_version": 1, "station_id": "ST001", "observed_at": "{at}", "values": {values}{extra}}}'
    ).encode()


@pytest.mark.parametrize(
    ("raw", "code", "needle"),
    [
        (body('{"pm1": 5}'), "invalid", "values.pm1.[key]: Input should be 'pm25'"),
        (body('{"co": 800}', ', "units": {"co": "ug/m3"}'), "invalid", "unit 'ug/m3' is not possible for co"),
        (body('{"pm25": 8}', ', "units": {"pm25": "ppb"}'), "invalid", "stations report ug/m3"),
        (body('{"pm25": NaN}'), "not_json", "JSON"),
        (body('{"pm25": 1e999}'), "not_json", "infinity"),
        (body('{"pm25": 8}', at="2027-01-01T00:00:00+00:00"), "future", "ahead of the clock"),
    ],
)
def test_bad_readings_are_refused_with_a_reason(raw: bytes, code: str, needle: str) -> None:
    got = parse_reading(raw, T, LIMITS, lambda s: True)
    assert isinstance(got, Rejection) and got.code == code and needle in got.reason, got


def test_declared_units_that_are_possible_are_accepted() -> None:
    got = parse_reading(
        body('{"co": 0.8, "pm25": 8}', ', "units": {"co": "mg/m3", "pm25": "µg/m³"}'),
        T,
        LIMITS,
        lambda s: True,
    )
    assert not isinstance(got, Rejection)
