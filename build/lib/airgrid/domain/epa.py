"""US EPA AQI (2024 PM2.5 revision, EPA-454/B-24-002): sub-indices, NowCast and categories.

Rules, as the EPA Technical Assistance Document gives them:

* Concentrations are truncated (not rounded) before lookup: PM2.5 and CO to 0.1, O3 to 0.001 ppm,
  PM10, SO2 and NO2 to an integer. The EPA table has integer gaps (0-50, 51-100, ...) that the
  truncated value never falls into. The AQI is then rounded to the nearest integer (half up).
* Native units: PM in ug/m3, O3 and CO in ppm, SO2 and NO2 in ppb. With ``from_ugm3=True`` the
  gases are converted from ug/m3 (CO from mg/m3) at 25 C and 1 atm (molar volume 24.45 L):
  O3 1 ppb = 1.963 ug/m3, NO2 1 ppb = 1.88 ug/m3, SO2 1 ppb = 2.62 ug/m3, CO 1 ppm = 1.145 mg/m3.
* O3 8h defines AQI 0-300 only: above 0.200 ppm there is no 8h index (None) and O3 1h is used.
  O3 1h defines AQI 101-500 only: below 0.125 ppm there is no 1h index (None).
* SO2 1h defines AQI 0-200 only: at 305 ppb or more there is no 1h index (None) and the 24h
  average is used, which itself is defined from 305 ppb (AQI 201) upward.
* Above the top breakpoint the top segment is extrapolated (AQI may exceed 500).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, Inexact, localcontext
from functools import cache
from importlib import resources
from typing import Any

from airgrid.domain.aqi import Number, pollutant_of, to_decimal

EPA_INDICATORS: tuple[str, ...] = (
    "pm25_24h",
    "pm10_24h",
    "o3_8h",
    "o3_1h",
    "co_8h",
    "so2_1h",
    "so2_24h",
    "no2_1h",
)
# What a bare pollutant name means to the CLI under epa-2024 (the reporting basis per pollutant).
CLI_INDICATOR: dict[str, str] = {
    "pm25": "pm25_24h",
    "pm10": "pm10_24h",
    "o3": "o3_8h",
    "co": "co_8h",
    "so2": "so2_1h",
    "no2": "no2_1h",
}
NATIVE_UNIT: dict[str, str] = {
    "pm25_24h": "ug/m3",
    "pm10_24h": "ug/m3",
    "o3_8h": "ppm",
    "o3_1h": "ppm",
    "co_8h": "ppm",
    "so2_1h": "ppb",
    "so2_24h": "ppb",
    "no2_1h": "ppb",
}
# ug/m3 per ppb (CO: mg/m3 per ppm) at 25 C, 1 atm: molecular weight / 24.45.
UGM3_PER_PPB: dict[str, Decimal] = {
    "o3": Decimal("1.963"),
    "no2": Decimal("1.88"),
    "so2": Decimal("2.62"),
    "co": Decimal("1.145"),
}
_TABLE_KEY = {
    "pm25_24h": "pm25_24h_ugm3",
    "pm10_24h": "pm10_24h_ugm3",
    "o3_8h": "o3_8h_ppm",
    "o3_1h": "o3_1h_ppm",
    "co_8h": "co_8h_ppm",
    "so2_1h": "so2_1h_ppb",
    "so2_24h": "so2_1h_ppb",
    "no2_1h": "no2_1h_ppb",
}
_STEP = {
    "pm25_24h": Decimal("0.1"),
    "co_8h": Decimal("0.1"),
    "o3_8h": Decimal("0.001"),
    "o3_1h": Decimal("0.001"),
}


@dataclass(frozen=True)
class _Segment:
    c_lo: Decimal
    c_hi: Decimal
    i_lo: int
    i_hi: int

    def aqi(self, conc: Decimal) -> int:
        """Linear interpolation (or extrapolation past c_hi), rounded half up, exactly."""
        with localcontext() as ctx:
            ctx.prec = max(28, len(conc.as_tuple().digits) + 20)
            ctx.traps[Inexact] = True
            quot, rem = divmod((self.i_hi - self.i_lo) * (conc - self.c_lo), self.c_hi - self.c_lo)
            return self.i_lo + int(quot) + (1 if 2 * rem >= self.c_hi - self.c_lo else 0)


@cache
def _segments(indicator: str) -> tuple[_Segment, ...]:
    if indicator not in _TABLE_KEY:
        raise ValueError(
            f"unknown EPA indicator {indicator!r} (expected one of: {', '.join(EPA_INDICATORS)})"
        )
    text = resources.files("airgrid.domain").joinpath("aqi_tables.json").read_text("utf-8")
    table: dict[str, Any] = json.loads(text, parse_float=Decimal)["epa-2024"]["breakpoints"]
    segs = [
        _Segment(Decimal(c[0]), Decimal(c[1]), int(a[0]), int(a[1]))
        for c, a in zip(table[_TABLE_KEY[indicator]], table["aqi"], strict=True)
        if c is not None  # blank cells: O3 1h below AQI 101, O3 8h above 300
    ]
    # SO2 shares one column: 1h values define AQI up to 200, 24h values from 201.
    if indicator == "so2_1h":
        segs = [s for s in segs if s.i_hi <= 200]
    elif indicator == "so2_24h":
        segs = [s for s in segs if s.i_lo > 200]
    return tuple(segs)


def ugm3_to_native(indicator: str, conc: Number) -> Decimal:
    """Convert ug/m3 (CO: mg/m3) to the EPA unit of ``indicator`` (ppm: O3, CO; ppb: SO2, NO2)."""
    c = to_decimal(conc, indicator)
    pollutant = pollutant_of(indicator)
    if pollutant not in UGM3_PER_PPB:
        return c  # PM is ug/m3 in both systems
    value = c / UGM3_PER_PPB[pollutant]
    return value / 1000 if pollutant == "o3" else value  # O3 table is in ppm


def epa_aqi(indicator: str, conc: Number, *, from_ugm3: bool = False) -> int | None:
    """US EPA AQI of one indicator, or None where the EPA table defines no index.

    ``conc`` is in the EPA unit (``NATIVE_UNIT``) unless ``from_ugm3`` is set. None means: O3 8h
    above 0.200 ppm (use O3 1h), O3 1h below 0.125 ppm (use O3 8h), SO2 1h at 305 ppb or more (use
    the 24h average), SO2 24h below 305 ppb (the 1h value governs).
    """
    segs = _segments(indicator)
    c = ugm3_to_native(indicator, conc) if from_ugm3 else to_decimal(conc, indicator)
    c = c.quantize(_STEP.get(indicator, Decimal(1)), rounding=ROUND_DOWN)  # truncate
    if c < segs[0].c_lo:
        return None
    if c > segs[-1].c_hi and indicator in ("o3_8h", "so2_1h"):
        return None
    for seg in segs:
        if c <= seg.c_hi:
            return seg.aqi(c)
    return segs[-1].aqi(c)  # above the table: extrapolate the top segment


@dataclass(frozen=True)
class EpaCategory:
    """A US EPA AQI category."""

    level: int
    name: str
    colour: str
    aqi_min: int
    aqi_max: int | None  # Hazardous is open-ended


EPA_CATEGORIES: tuple[EpaCategory, ...] = (
    EpaCategory(1, "Good", "#00E400", 0, 50),
    EpaCategory(2, "Moderate", "#FFFF00", 51, 100),
    EpaCategory(3, "Unhealthy for Sensitive Groups", "#FF7E00", 101, 150),
    EpaCategory(4, "Unhealthy", "#FF0000", 151, 200),
    EpaCategory(5, "Very Unhealthy", "#8F3F97", 201, 300),
    EpaCategory(6, "Hazardous", "#7E0023", 301, None),
)


def epa_category(aqi: int) -> EpaCategory:
    """EPA category of an AQI value (301 and above, including beyond 500, is Hazardous)."""
    if aqi < 0:
        raise ValueError(f"AQI cannot be negative: {aqi}")
    for cat in EPA_CATEGORIES:
        if cat.aqi_max is None or aqi <= cat.aqi_max:
            return cat
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class EpaResult:
    """Overall EPA AQI: the highest sub-index; ``primary`` lists every indicator that reaches it."""

    aqi: int | None
    iaqi: dict[str, int]
    category: EpaCategory | None
    primary: tuple[str, ...]
    missing: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        cat = self.category
        return {
            "standard": "epa-2024",
            "aqi": self.aqi,
            "category": None
            if cat is None
            else {
                "level": cat.level,
                "name": cat.name,
                "colour": cat.colour,
            },
            "primary": list(self.primary),
            "iaqi": dict(self.iaqi),
            "missing": list(self.missing),
        }


def epa_result(concs: Mapping[str, Number | None], *, from_ugm3: bool = False) -> EpaResult:
    """Overall EPA AQI from indicator -> concentration (None = missing).

    O3 takes the higher of its 8h and 1h indices (1h carries it above 0.200 ppm 8h); SO2 takes the
    24h index when the 1h value is beyond its table. EPA has no missing-data rule for the overall
    index: it is the maximum of what is available, and ``missing`` names the six pollutants that
    got no index (e.g. SO2 1h >= 305 ppb with no 24h average).
    """
    index: dict[str, int] = {}
    for ind in EPA_INDICATORS:
        raw = concs.get(ind)
        if raw is not None:
            value = epa_aqi(ind, raw, from_ugm3=from_ugm3)
            if value is not None:
                index[ind] = value
    unknown = [k for k in concs if k not in EPA_INDICATORS]
    if unknown:
        raise ValueError(f"unknown EPA indicator {unknown[0]!r}")
    have = {pollutant_of(i) for i in index}
    missing = tuple(p for p in ("pm25", "pm10", "so2", "no2", "co", "o3") if p not in have)
    if not index:
        return EpaResult(None, index, None, (), missing)
    aqi = max(index.values())
    primary = tuple(i for i, v in index.items() if v == aqi)
    return EpaResult(aqi, index, epa_category(aqi), primary, missing)


def nowcast(hourly: Sequence[Number | None]) -> Decimal | None:
    """EPA NowCast for PM from hourly averages, most recent first (only the first 12 are used).

    None or NaN marks a missing hour. Needs at least 2 valid values among the 3 most recent hours,
    else None. Weight w = min/max over the valid hours, floored at 0.5;
    NowCast = sum(c_i * w**i) / sum(w**i) over valid hours i (hours ago). Not truncated: look the
    result up with ``epa_aqi("pm25_24h", ...)``, which truncates.
    """
    values: list[Decimal | None] = []
    for raw in list(hourly)[:12]:
        if raw is None or (isinstance(raw, float | Decimal) and math.isnan(raw)):
            values.append(None)
        else:
            values.append(to_decimal(raw, "nowcast hour"))
    if sum(v is not None for v in values[:3]) < 2:
        return None
    valid = [(i, v) for i, v in enumerate(values) if v is not None]
    c_max = max(v for _, v in valid)
    if c_max == 0:
        return Decimal(0)
    w = max(min(v for _, v in valid) / c_max, Decimal("0.5"))
    weights = [(w**i, v) for i, v in valid]
    total = sum((wt * v for wt, v in weights), Decimal(0))
    return total / sum((wt for wt, _ in weights), Decimal(0))
