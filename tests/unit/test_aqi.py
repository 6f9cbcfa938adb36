"""Tests of airgrid.domain.aqi and airgrid.domain.epa: reference vectors, rules, properties, CLI."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airgrid.cli import run
from airgrid.domain import aqi as aqi_mod
from airgrid.domain.aqi import (
    HOURLY_INDICATORS,
    INDICATORS,
    AqiResult,
    Standard,
    breakpoints,
    categories,
    category,
    daily_aqi,
    hourly_aqi,
    iaqi,
    na_reason,
    standard_for,
)
from airgrid.domain.epa import (
    EPA_CATEGORIES,
    EPA_INDICATORS,
    epa_aqi,
    epa_category,
    epa_result,
    nowcast,
    ugm3_to_native,
)

S12, S26 = Standard.HJ633_2012, Standard.HJ633_2026
REPO = Path(__file__).resolve().parents[2]
# The reference facts (breakpoints, categories, test vectors) in the repository, so a clone runs
# every check; tests/data/reference/README.md says where they come from.
REFERENCE = REPO / "tests" / "data" / "reference" / "aqi_standards.json"
VERSION_KEYS = {"cn_hj633_2012": S12, "cn_hj633_2026": S26}


def _reference() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REFERENCE.read_text("utf-8"))
    return data


def _check_vector(vector: dict[str, Any]) -> int:
    """Assert one reference vector; returns how many expectations it checked."""
    indicator, conc = vector["pollutant"], vector["conc"]
    checked = 0
    for key, expected in vector.items():
        if key in VERSION_KEYS:
            std = VERSION_KEYS[key]
            if isinstance(expected, str):
                # Only "take the 24h value" is a known textual expectation; anything else is new.
                assert "24h" in expected, f"unknown textual expectation {expected!r}"
                assert iaqi(indicator, conc, std) is None
                res = hourly_aqi({"so2": conc}, std, so2_24h=523)
                assert res.iaqi == {"so2_24h": 158}
            else:
                assert iaqi(indicator, conc, std) == expected, (indicator, conc, key)
            checked += 1
        elif key == "us_epa_2024":
            assert epa_aqi(indicator, conc) == expected
            checked += 1
    return checked


# --- reference vectors and tables ------------------------------------------------------------


@pytest.mark.parametrize(
    "vector", _reference()["test_vectors"], ids=lambda v: f"{v['pollutant']}={v['conc']}"
)
def test_reference_vectors(vector: dict[str, Any]) -> None:
    assert _check_vector(vector) >= 1


def test_the_reference_has_its_vectors() -> None:
    """A truncated copy would make the parametrised test above check nothing."""
    ref = _reference()
    assert len(ref["test_vectors"]) >= 9 and {"cn_hj633_2012", "cn_hj633_2026"} <= set(ref)


def test_shipped_tables_equal_reference() -> None:
    ref = _reference()
    shipped = json.loads(resources.files("airgrid.domain").joinpath("aqi_tables.json").read_text("utf-8"))
    assert shipped["hj633-2012"]["breakpoints"] == ref["cn_hj633_2012"]["breakpoints"]
    assert shipped["hj633-2026"]["breakpoints"] == ref["cn_hj633_2026"]["breakpoints"]
    assert shipped["categories"] == ref["categories"]
    assert shipped["epa-2024"]["breakpoints"] == ref["us_epa_2024"]["breakpoints"]


def test_versions_differ_only_in_pm_tables() -> None:
    both = [i for i in INDICATORS if i not in ("pm25_1h", "pm10_1h")]
    differing = [i for i in both if breakpoints(i, S12) != breakpoints(i, S26)]
    assert differing == ["pm25_24h", "pm10_24h"]
    assert (Decimal(60), 100) in breakpoints("pm25_24h", S26)
    assert (Decimal(75), 100) in breakpoints("pm25_24h", S12)
    assert (Decimal(120), 100) in breakpoints("pm10_24h", S26)
    assert (Decimal(150), 100) in breakpoints("pm10_24h", S12)


# --- properties ------------------------------------------------------------------------------

HJ_CASES = [(i, S12) for i in INDICATORS if i not in ("pm25_1h", "pm10_1h")] + [(i, S26) for i in INDICATORS]


def _top(indicator: str, std: Standard) -> Decimal:
    return breakpoints(indicator, std)[-1][0]


def _exact(indicator: str, std: Standard, conc: Decimal) -> Fraction:
    """Independent oracle: the exact interpolated value as a Fraction."""
    bps = breakpoints(indicator, std)
    c = Fraction(conc)
    for (c_lo, i_lo), (c_hi, i_hi) in itertools.pairwise(bps):
        if c <= Fraction(c_hi):
            return i_lo + Fraction(i_hi - i_lo) * (c - Fraction(c_lo)) / Fraction(c_hi - c_lo)
    raise AssertionError("above table")


@st.composite
def hj_pair(
    draw: st.DrawFn, cases: list[tuple[str, Standard]] = HJ_CASES
) -> tuple[str, Standard, Decimal, Decimal]:
    indicator, std = draw(st.sampled_from(cases))
    hi = _top(indicator, std) * Decimal("1.2")
    conc = st.decimals(min_value=0, max_value=hi, places=3, allow_nan=False, allow_infinity=False)
    a, b = sorted((draw(conc), draw(conc)))
    return indicator, std, a, b


@given(hj_pair())
@settings(max_examples=600)
def test_iaqi_is_monotonic(case: tuple[str, Standard, Decimal, Decimal]) -> None:
    indicator, std, a, b = case
    ia, ib = iaqi(indicator, a, std), iaqi(indicator, b, std)
    if ib is None:  # only 2012 so2_1h / o3_8h above 800 have no index
        assert std is S12
        assert indicator in ("so2_1h", "o3_8h")
        assert b > 800
        return
    assert ia is not None
    assert 0 <= ia <= ib <= 500


@given(st.sampled_from(HJ_CASES), st.floats(min_value=0, max_value=4000), st.floats(0, 4000))
def test_iaqi_is_monotonic_for_float_input(case: tuple[str, Standard], x: float, y: float) -> None:
    indicator, std = case
    a, b = sorted((x, y))
    ia, ib = iaqi(indicator, a, std), iaqi(indicator, b, std)
    if ia is not None and ib is not None:
        assert ia <= ib


@given(hj_pair([c for c in HJ_CASES if c[1] is S12]))
@settings(max_examples=400)
def test_2012_iaqi_is_the_ceiling_of_the_exact_value(
    case: tuple[str, Standard, Decimal, Decimal],
) -> None:
    indicator, _, conc, _ = case
    if conc > _top(indicator, S12):
        return
    exact = _exact(indicator, S12, conc)
    assert iaqi(indicator, conc, S12) == math.ceil(exact)


@given(hj_pair([c for c in HJ_CASES if c[1] is S26]))
@settings(max_examples=400)
def test_2026_iaqi_is_ceiling_after_half_even_rounding(
    case: tuple[str, Standard, Decimal, Decimal],
) -> None:
    indicator, _, conc, _ = case
    step = Decimal("0.1") if indicator.startswith("co") else Decimal(1)
    rounded = conc.quantize(step, rounding="ROUND_HALF_EVEN")
    if rounded > _top(indicator, S26):
        return
    assert iaqi(indicator, conc, S26) == math.ceil(_exact(indicator, S26, rounded))


@pytest.mark.parametrize(("indicator", "std"), HJ_CASES)
def test_continuity_at_every_breakpoint(indicator: str, std: Standard) -> None:
    tiny = Decimal("0.000001")
    bps = breakpoints(indicator, std)
    for k, (bp, value) in enumerate(bps):
        assert iaqi(indicator, bp, std) == value, (indicator, std, bp)
        if k > 0:  # just below: the ceiling reaches the breakpoint value, never beyond
            assert iaqi(indicator, bp - tiny, std) == value
        above = iaqi(indicator, bp + tiny, std)
        if k == len(bps) - 1:
            continue  # beyond the table: overflow rules, tested below
        if std is S26:
            assert above == value  # rounds back onto the breakpoint
        else:
            assert above == value + 1  # continuous: the next segment starts at the same value


@given(
    st.sampled_from([i for i in INDICATORS if not i.startswith("pm")]),
    st.integers(min_value=0, max_value=4000),
    st.integers(min_value=0, max_value=9),
)
def test_versions_agree_where_tables_agree(indicator: str, whole: int, tenth: int) -> None:
    # Values already on the 2026 rounding grid, so only the tables could make them differ.
    conc = Decimal(whole) + (Decimal(tenth) / 10 if indicator.startswith("co") else 0)
    v12, v26 = iaqi(indicator, conc, S12), iaqi(indicator, conc, S26)
    if indicator in ("so2_1h", "o3_8h") and conc > 800:
        assert v12 is None
        assert v26 == {"so2_1h": 200, "o3_8h": 300}[indicator]
    else:
        assert v12 == v26


@given(st.sampled_from(["pm25_24h", "pm10_24h"]), st.integers(min_value=0, max_value=700))
def test_pm_versions_differ_only_where_documented(indicator: str, conc: int) -> None:
    v12, v26 = iaqi(indicator, conc, S12), iaqi(indicator, conc, S26)
    assert v12 is not None
    assert v26 is not None
    lo, hi = (35, 115) if indicator == "pm25_24h" else (50, 250)
    if lo < conc < hi:
        assert v26 >= v12  # the 2026 IAQI-100 breakpoint is lower, so the index is higher
    else:
        assert v26 == v12


def test_pm_versions_strictly_differ_at_documented_points() -> None:
    assert (iaqi("pm25_24h", 60, S12), iaqi("pm25_24h", 60, S26)) == (82, 100)
    assert (iaqi("pm10_24h", 120, S12), iaqi("pm10_24h", 120, S26)) == (85, 100)
    assert (iaqi("pm10_24h", 150, S12), iaqi("pm10_24h", 150, S26)) == (100, 112)


# --- exact rules -----------------------------------------------------------------------------


def test_so2_1h_overflow_rules() -> None:
    assert iaqi("so2_1h", 800, S12) == 200
    assert iaqi("so2_1h", "800.001", S12) is None
    assert iaqi("so2_1h", 1600, S12) is None  # never the 24h table (which would say 300)
    assert iaqi("so2_1h", 801, S26) == 200
    assert iaqi("so2_1h", 1600, S26) == 200
    assert iaqi("so2_1h", 10**6, S26) == 200
    assert iaqi("so2_1h", "800.4", S26) == 200


def test_o3_8h_overflow_rules() -> None:
    assert iaqi("o3_8h", 800, S12) == 300
    assert iaqi("o3_8h", 801, S12) is None
    assert iaqi("o3_8h", 801, S26) == 300
    assert iaqi("o3_8h", 5000, S26) == 300


@pytest.mark.parametrize("std", [S12, S26])
def test_above_top_breakpoint_caps_at_500(std: Standard) -> None:
    assert iaqi("pm25_24h", 500, std) == 500
    assert iaqi("pm25_24h", 501, std) == 500
    assert iaqi("pm25_24h", Decimal("1E+40"), std) == 500
    assert iaqi("no2_1h", 5000, std) == 500
    assert iaqi("co_24h", "60.4", std) == 500
    assert iaqi("pm25_24h", 450, std) == 467  # below the top: 466.67 interpolated, not capped


def test_half_to_even_rounding_2026() -> None:
    assert iaqi("pm25_24h", 60.5, S26) == 100  # 60.5 -> 60
    assert iaqi("pm25_24h", 61.5, S26) == 102  # 61.5 -> 62
    assert iaqi("pm25_24h", "61.49", S26) == 101  # 61.49 -> 61
    assert iaqi("pm25_1h", 2.5, S26) == 3  # 2 -> ceil(2.857)
    assert iaqi("pm25_1h", 3.5, S26) == 6  # 4 -> ceil(5.714)
    assert iaqi("co_24h", "4.05", S26) == 100  # 4.05 -> 4.0
    assert iaqi("co_24h", "4.15", S26) == 101  # 4.15 -> 4.2
    assert iaqi("co_24h", "4.25", S26) == 101  # 4.25 -> 4.2
    # 0.35 as a float is 0.34999...; via str() it is 0.35 -> 0.4 -> IAQI 4, not 0.3 -> 3.
    assert iaqi("co_1h", 0.35, S26) == 4
    # 2012 does not round the concentration.
    assert iaqi("pm25_24h", 60.5, S12) == 82
    assert iaqi("co_24h", "4.05", S12) == 101


def test_iaqi_is_ceiling_not_half_up() -> None:
    assert iaqi("pm25_24h", 36, S12) == 52  # 51.25; half-up or an EPA-style gap table gives 51
    assert iaqi("pm25_24h", 80, S12) == 107  # 106.25
    assert iaqi("pm25_24h", "35.5", S12) == 51  # 50.625: no 35-36 gap in the Chinese table
    assert iaqi("pm10_24h", 130, S12) == 90  # exactly 90 stays 90
    assert iaqi("so2_1h", 1, S12) == 1  # 0.33 -> 1
    assert iaqi("pm25_24h", Decimal("0.0000001"), S12) == 1


@pytest.mark.parametrize("bad", [-1, "-0.1", float("nan"), "NaN", float("inf"), "abc", "", True])
def test_bad_concentrations_raise(bad: Any) -> None:
    with pytest.raises(ValueError, match="concentration"):
        iaqi("pm25_24h", bad, S12)


def test_bad_indicator_and_standard_raise() -> None:
    with pytest.raises(ValueError, match="unknown indicator"):
        iaqi("pm3_24h", 1, S12)
    with pytest.raises(ValueError, match="24h average"):
        iaqi("pm25_1h", 1, S12)  # 2012 has no 1h PM table
    with pytest.raises(ValueError, match="epa"):
        iaqi("pm25_24h", 1, Standard.EPA_2024)


def test_input_types_agree() -> None:
    assert (
        iaqi("co_24h", 4.5, S12) == iaqi("co_24h", "4.5", S12) == iaqi("co_24h", Decimal("4.5"), S12) == 103
    )
    assert iaqi("pm25_24h", 80, S12) == 107


# --- categories and standard selection -------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "level", "en", "zh", "colour"),
    [
        (0, 1, "Excellent", "优", "#00E400"),
        (50, 1, "Excellent", "优", "#00E400"),
        (51, 2, "Good", "良", "#FFFF00"),
        (100, 2, "Good", "良", "#FFFF00"),
        (101, 3, "Lightly polluted", "轻度污染", "#FF7E00"),
        (150, 3, "Lightly polluted", "轻度污染", "#FF7E00"),
        (151, 4, "Moderately polluted", "中度污染", "#FF0000"),
        (200, 4, "Moderately polluted", "中度污染", "#FF0000"),
        (201, 5, "Heavily polluted", "重度污染", "#99004C"),
        (300, 5, "Heavily polluted", "重度污染", "#99004C"),
        (301, 6, "Severely polluted", "严重污染", "#7E0023"),
        (500, 6, "Severely polluted", "严重污染", "#7E0023"),
        (501, 6, "Severely polluted", "严重污染", "#7E0023"),
    ],
)
def test_category(value: int, level: int, en: str, zh: str, colour: str) -> None:
    cat = category(value)
    assert (cat.level, cat.en, cat.zh, cat.colour) == (level, en, zh, colour)


def test_category_rejects_negative_and_has_six_levels() -> None:
    with pytest.raises(ValueError):
        category(-1)
    assert [c.level for c in categories()] == [1, 2, 3, 4, 5, 6]


def test_standard_for_uses_the_china_date() -> None:
    assert standard_for(datetime(2026, 2, 28, 15, 59, 59, tzinfo=UTC)) is S12
    assert standard_for(datetime(2026, 2, 28, 16, 0, tzinfo=UTC)) is S26  # 00:00 in Beijing
    assert standard_for(datetime(2026, 3, 1, 7, 0, tzinfo=timezone(timedelta(hours=-8)))) is S26
    assert standard_for(datetime(2026, 3, 1, 7, 0, tzinfo=timezone(timedelta(hours=8)))) is S26
    assert standard_for(datetime(2026, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=9)))) is S12
    assert standard_for(date(2026, 2, 28)) is S12
    assert standard_for(date(2026, 3, 1)) is S26
    with pytest.raises(ValueError, match="timezone"):
        standard_for(datetime(2026, 3, 1, 12, 0))  # noqa: DTZ001 - naive on purpose


# --- real-time and daily AQI -----------------------------------------------------------------

LOW_GASES: dict[str, Any] = {"so2": 20, "no2": 40, "co": 0.8, "o3": 90}


def test_hourly_2026_example() -> None:
    res = hourly_aqi({"pm25": 80, "pm10": 130, **LOW_GASES}, S26)
    assert res == AqiResult(
        aqi=119,
        iaqi={"pm25_1h": 119, "pm10_1h": 104, "so2_1h": 7, "no2_1h": 20, "co_1h": 8, "o3_1h": 29},
        category=category(119),
        primary=("pm25_1h",),
        standard=S26,
        missing=(),
    )
    assert res.category is not None
    assert res.category.level == 3


def test_hourly_2012_pm_uses_24h_sliding_average_not_1h() -> None:
    res = hourly_aqi({"pm25": 300, "pm10": 400, **LOW_GASES}, S12, pm25_24h=80, pm10_24h=130)
    assert res.iaqi["pm25_24h"] == 107
    assert res.iaqi["pm10_24h"] == 90
    assert "pm25_1h" not in res.iaqi
    assert "pm10_1h" not in res.iaqi
    assert res.aqi == 107
    assert res.primary == ("pm25_24h",)
    # Without the 24h averages PM is missing, even though 1h values were given.
    res = hourly_aqi({"pm25": 300, "pm10": 400, **LOW_GASES}, S12)
    assert res.missing == ("pm25", "pm10")
    assert res.aqi is None


def test_hourly_2026_ignores_24h_pm_and_uses_1h() -> None:
    res = hourly_aqi({"pm25": 80, "pm10": 130, **LOW_GASES}, S26, pm25_24h=10, pm10_24h=10)
    assert "pm25_24h" not in res.iaqi
    assert res.iaqi["pm25_1h"] == 119


def test_hourly_so2_overflow_fallback() -> None:
    gases = {"no2": 40, "co": 0.8, "o3": 90}
    res = hourly_aqi({"so2": 900, **gases}, S12, pm25_24h=10, pm10_24h=10, so2_24h=523)
    assert res.iaqi["so2_24h"] == 158
    assert "so2_1h" not in res.iaqi
    assert res.aqi == 158
    assert res.primary == ("so2_24h",)
    res = hourly_aqi({"so2": 900, **gases}, S12, pm25_24h=10, pm10_24h=10)
    assert res.missing == ("so2",)
    assert res.aqi is None
    res = hourly_aqi({"so2": 100, **gases}, S12, pm25_24h=10, pm10_24h=10, so2_24h=2000)
    assert "so2_24h" not in res.iaqi  # the 24h value only stands in above 800
    res = hourly_aqi({"pm25": 10, "pm10": 10, "so2": 900, **gases}, S26, so2_24h=2000)
    assert res.iaqi["so2_1h"] == 200
    assert "so2_24h" not in res.iaqi


def test_hourly_o3_8h_counts_when_given() -> None:
    base = {"pm25": 10, "pm10": 10, **LOW_GASES}
    assert hourly_aqi(base, S26, o3_8h=161).iaqi["o3_8h"] == 101
    assert hourly_aqi(base, S26, o3_8h=161).primary == ("o3_8h",)
    res = hourly_aqi({**LOW_GASES, "o3": 500}, S12, pm25_24h=10, pm10_24h=10, o3_8h=900)
    assert "o3_8h" not in res.iaqi
    assert res.aqi == res.iaqi["o3_1h"] == 225


def test_primary_pollutant_ties_and_threshold() -> None:
    res = hourly_aqi({"pm25": 80, "pm10": 168, **LOW_GASES}, S26)
    assert res.iaqi["pm10_1h"] == 119
    assert res.primary == ("pm25_1h", "pm10_1h")
    at_50 = hourly_aqi({"pm25": 35, "pm10": 10, **LOW_GASES}, S26)
    assert at_50.aqi == 50
    assert at_50.primary == ()
    at_51 = hourly_aqi({"pm25": 36, "pm10": 10, **LOW_GASES}, S26)
    assert at_51.aqi == 52
    assert at_51.primary == ("pm25_1h",)


def test_missing_pollutant_rule() -> None:
    # CO missing, the others reach 119 > 100: computed from the others and published.
    res = hourly_aqi({"pm25": 80, "pm10": 130, "so2": 20, "no2": 40, "o3": 90}, S26)
    assert res.aqi == 119
    assert res.missing == ("co",)
    assert res.primary == ("pm25_1h",)
    # CO None and O3 absent, the others reach exactly 100 (not > 100): NA.
    res = hourly_aqi({"pm25": 60, "pm10": 50, "so2": 20, "no2": 40, "co": None}, S26)
    assert res.aqi is None
    assert res.category is None
    assert res.primary == ()
    assert res.missing == ("co", "o3")
    assert res.iaqi["pm25_1h"] == 100


def test_missing_pollutant_rule_publishes_above_100() -> None:
    res = hourly_aqi({"pm25": 60, "pm10": 130, "so2": 20, "no2": 40}, S26)
    assert res.aqi == 104
    assert res.missing == ("co", "o3")


def test_empty_input() -> None:
    res = hourly_aqi({}, S26)
    assert res.aqi is None
    assert res.iaqi == {}
    assert len(res.missing) == 6


def test_aqi_range_minimum() -> None:
    zeros = {p: 0 for p in ("pm25", "pm10", "so2", "no2", "co", "o3")}
    assert hourly_aqi(zeros, S26).aqi == 1  # HJ 633-2026 range is 1..500
    assert hourly_aqi(zeros, S12, pm25_24h=0, pm10_24h=0).aqi == 0
    assert hourly_aqi(zeros, S26).iaqi["pm25_1h"] == 0  # individual indices keep 0


def test_hourly_rejects_unknown_and_conflicting_input() -> None:
    with pytest.raises(ValueError, match="unknown pollutant 'pm3'"):
        hourly_aqi({"pm3": 1}, S26)
    with pytest.raises(ValueError, match="twice"):
        hourly_aqi({"pm25_24h": 1}, S12, pm25_24h=2)
    with pytest.raises(ValueError, match="negative"):
        hourly_aqi({"pm25": -1}, S26)
    with pytest.raises(ValueError):
        hourly_aqi({"pm25": 1}, Standard.EPA_2024)


def test_hourly_indicator_lists() -> None:
    assert "pm25_1h" not in HOURLY_INDICATORS[S12]
    assert "pm25_24h" in HOURLY_INDICATORS[S12]
    assert "pm25_1h" in HOURLY_INDICATORS[S26]
    assert "pm25_24h" not in HOURLY_INDICATORS[S26]


def test_daily_2012_and_2026() -> None:
    day = {"pm25": 80, "pm10": 130, "so2": 20, "no2": 40, "co": 0.8, "o3": 90}
    r12, r26 = daily_aqi(day, S12), daily_aqi(day, S26)
    assert (r12.aqi, r26.aqi) == (107, 119)
    assert set(r12.iaqi) == {"pm25_24h", "pm10_24h", "so2_24h", "no2_24h", "co_24h", "o3_8h"}
    assert r12.iaqi["no2_24h"] == 50
    assert r12.iaqi["o3_8h"] == 45
    # 2012 reports the O3 1h daily maximum too; when 8h exceeds 800 the 1h value carries O3.
    r = daily_aqi(day | {"o3": 900, "o3_1h_daily_max": 500}, S12)
    assert r.iaqi["o3_1h"] == 225
    assert "o3_8h" not in r.iaqi
    assert r.aqi == 225
    assert daily_aqi(day | {"o3": 900}, S26).iaqi["o3_8h"] == 300
    with pytest.raises(ValueError, match="not a daily indicator"):
        daily_aqi(day | {"o3_1h": 100}, S26)  # dropped from the 2026 daily report
    with pytest.raises(ValueError, match="not a daily indicator"):
        daily_aqi({"pm25_1h": 80}, S26)


def test_result_to_dict_is_json_ready() -> None:
    doc = hourly_aqi({"pm25": 80, "pm10": 130, **LOW_GASES}, S26).to_dict()
    assert json.loads(json.dumps(doc)) == doc
    assert doc["category"] == {"level": 3, "zh": "轻度污染", "en": "Lightly polluted", "colour": "#FF7E00"}


def test_no_binary_floats_in_the_arithmetic() -> None:
    for module in ("aqi.py", "epa.py"):
        source = resources.files("airgrid.domain").joinpath(module).read_text("utf-8")
        assert "float(" not in source, module


# --- US EPA 2024 -----------------------------------------------------------------------------


def test_epa_example_and_truncation() -> None:
    assert epa_aqi("pm25_24h", 35.9) == 102
    assert epa_aqi("pm25_24h", "35.49") == 100  # truncated to 35.4, not rounded to 35.5
    assert epa_aqi("pm25_24h", "9.09") == 50  # 9.0: never lands in the 9.0-9.1 gap
    assert epa_aqi("pm25_24h", "9.1") == 51
    assert epa_aqi("pm10_24h", "54.9") == 50
    assert epa_aqi("o3_8h", "0.0709") == 100
    assert epa_aqi("co_8h", "1.1") == 13  # 12.5 rounds half up, not to even
    assert epa_aqi("no2_1h", 100) == 100
    assert epa_aqi("pm25_24h", 0) == 0


def test_epa_o3_and_so2_switching() -> None:
    assert epa_aqi("o3_8h", "0.200") == 300
    assert epa_aqi("o3_8h", "0.201") is None  # above 300: O3 1h decides
    assert epa_aqi("o3_1h", "0.124") is None  # O3 1h only defines AQI >= 101
    assert epa_aqi("o3_1h", "0.125") == 101
    assert epa_aqi("so2_1h", 304) == 200
    assert epa_aqi("so2_1h", 305) is None  # >= 200 uses the 24h value
    assert epa_aqi("so2_24h", 305) == 201
    assert epa_aqi("so2_24h", 304) is None


def test_epa_extrapolates_above_the_table() -> None:
    # 301 + 199 * (500 - 225.5) / 99.9 = 847.8
    assert epa_aqi("pm25_24h", 500) == 848
    assert epa_aqi("pm25_24h", "325.4") == 500
    assert epa_aqi("o3_1h", "0.704") == 600  # 301 + 199 * 0.299 / 0.199 = 600.0


# Roughly 1.5x the top breakpoint of each EPA table, in its native unit.
EPA_SPAN = {
    "pm25_24h": 500,
    "pm10_24h": 900,
    "o3_8h": 0.3,
    "o3_1h": 0.9,
    "co_8h": 75,
    "so2_1h": 1500,
    "so2_24h": 1500,
    "no2_1h": 3000,
}


@given(st.sampled_from(EPA_INDICATORS), st.floats(0, 1), st.floats(0, 1))
def test_epa_is_monotonic(indicator: str, x: float, y: float) -> None:
    a, b = sorted((x * EPA_SPAN[indicator], y * EPA_SPAN[indicator]))
    ia, ib = epa_aqi(indicator, a), epa_aqi(indicator, b)
    if ia is not None and ib is not None:
        assert ia <= ib


def test_epa_unit_conversion() -> None:
    assert ugm3_to_native("o3_8h", "196.3") == Decimal("0.1")
    assert ugm3_to_native("no2_1h", 188) == 100
    assert ugm3_to_native("so2_1h", 262) == 100
    assert ugm3_to_native("co_8h", "1.145") == 1
    assert ugm3_to_native("pm25_24h", 80) == 80
    assert epa_aqi("o3_8h", "196.3", from_ugm3=True) == 187
    assert epa_aqi("so2_1h", 262, from_ugm3=True) == 112


@pytest.mark.parametrize(
    ("value", "name", "colour"),
    [
        (0, "Good", "#00E400"),
        (50, "Good", "#00E400"),
        (51, "Moderate", "#FFFF00"),
        (101, "Unhealthy for Sensitive Groups", "#FF7E00"),
        (151, "Unhealthy", "#FF0000"),
        (201, "Very Unhealthy", "#8F3F97"),
        (300, "Very Unhealthy", "#8F3F97"),
        (301, "Hazardous", "#7E0023"),
        (848, "Hazardous", "#7E0023"),
    ],
)
def test_epa_category(value: int, name: str, colour: str) -> None:
    cat = epa_category(value)
    assert (cat.name, cat.colour) == (name, colour)
    assert len(EPA_CATEGORIES) == 6


def test_epa_result() -> None:
    res = epa_result({"o3_8h": "0.25", "o3_1h": "0.25", "pm25_24h": "35.9"})
    assert res.iaqi == {"pm25_24h": 102, "o3_1h": 223}
    assert res.aqi == 223
    assert res.primary == ("o3_1h",)
    assert res.category is not None
    assert res.category.name == "Very Unhealthy"
    assert res.missing == ("pm10", "so2", "no2", "co")
    res = epa_result({"so2_1h": 400, "so2_24h": 400})
    assert res.iaqi == {"so2_24h": 232}  # 201 + 99 * 95 / 299 = 232.45
    with pytest.raises(ValueError):
        epa_result({"pm3": 1})


def test_nowcast() -> None:
    assert nowcast([10.0] * 12) == 10
    assert nowcast([20, 10] + [None] * 10) == Decimal(25) / Decimal("1.5")  # w = 0.5
    assert nowcast([40, 10]) == 30  # w = 0.25 raised to 0.5: (40 + 5) / 1.5
    # w = 0.8: (10 + 8*0.8 + ... ) computed independently with Fractions
    hours = [10, 8, 9, 10, 8, 9, 10, 8, 9, 10, 8, 9]
    w = Fraction(8, 10)
    num = sum((Fraction(c) * w**i for i, c in enumerate(hours)), Fraction(0))
    expected = num / sum((w**i for i in range(12)), Fraction(0))
    got = nowcast(hours)
    assert got is not None
    assert abs(Fraction(got) - expected) < Fraction(1, 10**20)
    assert nowcast([None, None, 5.0] + [5.0] * 9) is None  # needs 2 of the 3 most recent
    assert nowcast([5.0, float("nan"), None, 5.0]) is None
    assert nowcast([5.0, Decimal("NaN"), 5.0]) == 5  # NaN is a missing hour, not an error
    assert nowcast([None, 5.0, 5.0]) == 5
    assert nowcast([0, 0, 0]) == 0
    assert nowcast([1.0] * 12 + [1000.0]) == 1  # only the 12 most recent hours count
    with pytest.raises(ValueError):
        nowcast([-1, 2, 3])


# --- CLI -------------------------------------------------------------------------------------

EXAMPLE = ["pm25=80", "pm10=130", "so2=20", "no2=40", "co=0.8", "o3=90"]


def main(argv: list[str]) -> int:
    """``airgrid aqi ARGV``; its exit code."""
    return run(["aqi", *argv])


def test_cli_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*EXAMPLE, "--standard", "hj633-2026", "--period", "1h"]) == 0
    out = capsys.readouterr().out
    assert "AQI: 119" in out
    assert "Lightly polluted" in out
    assert "轻度污染" in out
    assert "Primary pollutant: pm25_1h (PM2.5)" in out
    assert "pm10_1h" in out
    assert " 104" in out


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*EXAMPLE, "--standard", "hj633-2026", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["aqi"] == 119
    assert doc["standard"] == "hj633-2026"
    assert doc["period"] == "1h"
    assert doc["iaqi"] == {"pm25_1h": 119, "pm10_1h": 104, "so2_1h": 7, "no2_1h": 20, "co_1h": 8, "o3_1h": 29}
    assert doc["primary"] == ["pm25_1h"]
    assert doc["category"]["zh"] == "轻度污染"


def test_cli_daily_and_explicit_indicators(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*EXAMPLE, "--standard", "hj633-2012", "--period", "24h", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["aqi"] == 107
    args = [*EXAMPLE, "pm25_24h=80", "pm10_24h=130", "--standard", "hj633-2012", "--json"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["iaqi"]["pm25_24h"] == 107
    assert "not used by hj633-2012 1h: pm25_1h, pm10_1h" in captured.err


def test_cli_2012_warns_about_1h_pm(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*EXAMPLE, "--standard", "hj633-2012"]) == 0
    captured = capsys.readouterr()
    assert "AQI: NA" in captured.out
    assert "Missing: pm25, pm10" in captured.out
    assert "24h sliding average" in captured.err


def test_cli_epa(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pm25=35.9", "--standard", "epa-2024", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["aqi"] == 102
    assert doc["category"]["name"] == "Unhealthy for Sensitive Groups"


def test_na_reason_names_the_rule_for_incomplete_data() -> None:
    partial = hourly_aqi({"pm25": 50}, S26)
    assert partial.aqi is None and partial.iaqi == {"pm25_1h": 80}
    assert na_reason(partial) == (
        "pm10, so2, no2, co, o3 missing: with incomplete data the AQI is published only above 100 "
        "(HJ 633-2026), and the pollutants given reach 80"
    )
    assert "2012 is silent" in (na_reason(hourly_aqi({"so2": 20}, S12)) or "")
    assert na_reason(hourly_aqi({"pm25": 200}, S26)) is None  # above 100: published
    assert na_reason(hourly_aqi({}, S26)) == "no value given is an indicator of this standard and period"


def test_cli_says_why_the_aqi_is_na(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 15: `aqi pm25=50` printed only `AQI: NA`."""
    assert main(["pm25=50", "--standard", "hj633-2026"]) == 0
    out = capsys.readouterr().out
    assert "AQI: NA: pm10, so2, no2, co, o3 missing: with incomplete data the AQI is published " in out
    assert main(["pm25=50", "--standard", "hj633-2026", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["aqi"] is None and doc["na_reason"] == na_reason(hourly_aqi({"pm25": 50}, S26))
    assert main([*EXAMPLE, "--standard", "hj633-2026", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["na_reason"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["pm3=80"],
            "airgrid: unknown pollutant 'pm3' (expected one of: pm25, pm10, so2, no2, co, o3)",
        ),
        (["pm25=abc"], "airgrid: invalid concentration for pm25: 'abc'"),
        (["pm25=-5"], "airgrid: negative concentration for pm25: -5"),
        (["pm25=nan"], "airgrid: invalid concentration for pm25: 'nan' is not a finite number"),
        (["pm25"], "airgrid: expected NAME=VALUE, got 'pm25'"),
        (["pm25=1", "pm25=2"], "airgrid: pm25 given twice"),
        (["pm25=1", "pm25_1h=2"], "airgrid: pm25_1h given twice"),
        (["pm25=1", "--standard", "hj"], "airgrid: Invalid value for '--standard': 'hj' is not one of"),
        ([], "airgrid: Missing argument 'NAME=VALUE...'"),
    ],
)
def test_cli_errors(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*args, "--standard", "hj633-2026"] if "--standard" not in args else args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(message), captured.err


def test_cli_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: airgrid aqi [OPTIONS] NAME=VALUE...") and "--standard" in out


def test_python_dash_m_entry_point() -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "airgrid", "aqi", *EXAMPLE, "--standard", "hj633-2026", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["aqi"] == 119
    bad = subprocess.run(
        [sys.executable, "-m", "airgrid", "aqi", "pm3=1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("airgrid: unknown pollutant 'pm3'")


def test_module_exports() -> None:
    assert aqi_mod.Standard("hj633-2026") is S26
    assert Standard.EPA_2024.value == "epa-2024"
