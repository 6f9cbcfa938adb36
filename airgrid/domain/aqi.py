"""China AQI (HJ 633-2012 and HJ 633-2026): individual indices, real-time and daily AQI.

All arithmetic is exact ``decimal.Decimal``; inputs (float, int, str or Decimal) are converted
through ``Decimal(str(x))`` so a float such as 60.5 is the decimal 60.5, never its binary neighbour.
Concentrations are ug/m3, CO in mg/m3. The US EPA index lives in :mod:`airgrid.domain.epa`.

Rules implemented, and the choices made where the standards are silent:

* IAQI is the linear interpolation between the two breakpoints around C, rounded UP to an integer
  (ceiling, never half-up). The Chinese tables are continuous: a concentration exactly on a
  breakpoint gives the breakpoint's IAQI whichever segment is used (no EPA-style 0-50/51-100 gaps).
* HJ 633-2026 first rounds the concentration half-to-even (GB/T 8170): whole ug/m3, CO to
  0.1 mg/m3. HJ 633-2012 says nothing about it, so 2012 uses the value as given.
* SO2 1h above 800 ug/m3: 2012 has no 1h IAQI (``iaqi`` returns None; the caller takes the 24h
  value); 2026 gives 200. O3 8h above 800: 2012 has no 8h IAQI (None; O3 1h is used); 2026 gives
  300. The 1h SO2 value is never looked up in the 24h table (a known error in public code).
* Above the top breakpoint of a 0-500 table (e.g. PM2.5 > 500 ug/m3) both versions are undefined;
  we cap the IAQI at 500, the top of the scale, so an extreme episode still reads "severe".
* HJ 633-2026 gives the AQI range as 1..500. An IAQI itself may still be 0 (zero concentration)
  so breakpoint continuity holds; only the aggregate AQI is raised to 1 under 2026.
  HJ 633-2012 keeps 0..500.
* Real-time (hourly) AQI: 2012 takes PM2.5/PM10 from the 24h sliding averages (never from the 1h
  values), SO2/NO2/CO/O3 from 1h, plus O3 8h sliding when given; 2026 takes all six from the 1h
  values (PM 1h values looked up in the 24h columns), plus O3 8h when given.
* Missing pollutant (HJ 633-2026 rule, applied to both versions because 2012 is silent): the AQI
  is computed from the others and published only if it exceeds 100, otherwise it is NA (None).
* Primary pollutant: only when AQI > 50, every indicator whose IAQI equals the AQI (ties all
  listed). Primary entries are indicator names (``pm25_24h``, ``o3_8h``) so the averaging period
  stays visible; :func:`pollutant_of` maps them back to the pollutant.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal, Inexact, InvalidOperation, localcontext
from enum import StrEnum
from functools import cache
from importlib import resources
from itertools import pairwise
from typing import Any

Number = Decimal | float | int | str


class Standard(StrEnum):
    """An AQI standard; the value is the identifier used in configuration and on the CLI."""

    HJ633_2012 = "hj633-2012"
    HJ633_2026 = "hj633-2026"
    EPA_2024 = "epa-2024"


# HJ 633-2026 takes effect on 2026-03-01, China date (UTC+8, no DST).
HJ633_2026_FROM = date(2026, 3, 1)
CHINA_TZ = timezone(timedelta(hours=8), "CST")


def standard_for(when: date) -> Standard:
    """Return the Chinese standard in force on ``when``.

    A ``datetime`` must be timezone-aware; it is converted to the China date first, so
    2026-02-28T16:00Z (already 1 March in Beijing) is HJ 633-2026. A plain ``date`` is taken to be
    a China date already.
    """
    if isinstance(when, datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError("standard_for needs a timezone-aware datetime")
        when = when.astimezone(CHINA_TZ).date()
    return Standard.HJ633_2026 if when >= HJ633_2026_FROM else Standard.HJ633_2012


POLLUTANTS: tuple[str, ...] = ("pm25", "pm10", "so2", "no2", "co", "o3")
DISPLAY_NAMES: dict[str, str] = {
    "pm25": "PM2.5",
    "pm10": "PM10",
    "so2": "SO2",
    "no2": "NO2",
    "co": "CO",
    "o3": "O3",
}
# Canonical order, also the order of ties in ``AqiResult.primary``.
INDICATORS: tuple[str, ...] = (
    "pm25_1h",
    "pm25_24h",
    "pm10_1h",
    "pm10_24h",
    "so2_1h",
    "so2_24h",
    "no2_1h",
    "no2_24h",
    "co_1h",
    "co_24h",
    "o3_1h",
    "o3_8h",
)
HOURLY_INDICATORS: dict[Standard, tuple[str, ...]] = {
    Standard.HJ633_2012: (
        "pm25_24h",
        "pm10_24h",
        "so2_1h",
        "so2_24h",
        "no2_1h",
        "co_1h",
        "o3_1h",
        "o3_8h",
    ),
    Standard.HJ633_2026: ("pm25_1h", "pm10_1h", "so2_1h", "no2_1h", "co_1h", "o3_1h", "o3_8h"),
}
DAILY_INDICATORS: dict[Standard, tuple[str, ...]] = {
    # o3_1h / o3_8h here are the daily maxima (HJ 633 "O3 daily max 1h / 8h").
    Standard.HJ633_2012: (
        "so2_24h",
        "no2_24h",
        "pm10_24h",
        "co_24h",
        "o3_1h",
        "o3_8h",
        "pm25_24h",
    ),
    Standard.HJ633_2026: ("so2_24h", "no2_24h", "co_24h", "o3_8h", "pm10_24h", "pm25_24h"),
}
DAILY_ALIASES = {"o3_1h_daily_max": "o3_1h", "o3_8h_daily_max": "o3_8h"}
_ONE = Decimal(1)
_TENTH = Decimal("0.1")


def pollutant_of(indicator: str) -> str:
    """``"pm25_24h"`` -> ``"pm25"``."""
    return indicator.split("_", 1)[0]


def unit_of(indicator: str) -> str:
    """Concentration unit of a Chinese indicator (CO is the only one in mg/m3)."""
    return "mg/m3" if pollutant_of(indicator) == "co" else "ug/m3"


@dataclass(frozen=True)
class _Table:
    conc: tuple[Decimal, ...]
    iaqi: tuple[int, ...]


@cache
def _raw_tables() -> dict[str, Any]:
    # Shipped inside the package (package-data): nothing outside the installed package is read.
    # parse_float=Decimal keeps 9.1 exactly 9.1.
    text = resources.files("airgrid.domain").joinpath("aqi_tables.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text, parse_float=Decimal)
    return data


@cache
def _hj_tables(standard: Standard) -> dict[str, _Table]:
    out: dict[str, _Table] = {}
    for name, spec in _raw_tables()[standard.value]["breakpoints"].items():
        conc = tuple(Decimal(c) for c in spec["conc"])
        iaqi = tuple(int(i) for i in spec["iaqi"])
        # A broken table would silently give wrong indices; refuse it instead.
        if len(conc) != len(iaqi) or conc[0] != 0 or iaqi[0] != 0 or any(a >= b for a, b in pairwise(conc)):
            raise ValueError(f"bad breakpoint table {standard.value}/{name}")
        out[name] = _Table(conc, iaqi)
    return out


def breakpoints(indicator: str, standard: Standard) -> tuple[tuple[Decimal, int], ...]:
    """The (concentration, IAQI) breakpoints used for ``indicator`` under ``standard``."""
    table = _table_for(indicator, standard)
    return tuple(zip(table.conc, table.iaqi, strict=True))


def _require_hj(standard: Standard) -> None:
    if standard not in HOURLY_INDICATORS:
        raise ValueError(f"{standard.value} is not an HJ 633 standard; use airgrid.domain.epa")


def _table_for(indicator: str, standard: Standard) -> _Table:
    _require_hj(standard)
    if indicator not in INDICATORS:
        expected = ", ".join(INDICATORS)
        raise ValueError(f"unknown indicator {indicator!r} (expected one of: {expected})")
    key = indicator
    if indicator in ("pm25_1h", "pm10_1h"):
        if standard is Standard.HJ633_2012:
            # HJ 633-2012 has no 1h PM breakpoints; real-time PM uses the 24h sliding average.
            raise ValueError(f"{indicator} has no IAQI under hj633-2012 (use the 24h average)")
        key = indicator.replace("_1h", "_24h")  # 2026: 1h PM looked up in the 24h columns
    return _hj_tables(standard)[key]


def to_decimal(value: Number, name: str = "concentration") -> Decimal:
    """Convert a concentration to Decimal via ``str``; reject bools, NaN, infinities, negatives."""
    if isinstance(value, bool):  # bool is an int; True ug/m3 is a caller bug
        raise ValueError(f"invalid concentration for {name}: {value!r}")
    try:
        dec = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"invalid concentration for {name}: {value!r}") from None
    if not dec.is_finite():
        raise ValueError(f"invalid concentration for {name}: {value!r} is not a finite number")
    if dec < 0:
        raise ValueError(f"negative concentration for {name}: {value}")
    return dec


def _interpolate(table: _Table, conc: Decimal) -> int:
    """Ceiling of the linear interpolation, computed exactly (no precision can be lost)."""
    # Enough digits for an exact product; Inexact is trapped so a rounding could never hide.
    with localcontext() as ctx:
        ctx.prec = max(28, len(conc.as_tuple().digits) + 20)
        ctx.traps[Inexact] = True
        for k in range(1, len(table.conc)):
            if conc <= table.conc[k]:
                c_lo, c_hi = table.conc[k - 1], table.conc[k]
                i_lo, i_hi = table.iaqi[k - 1], table.iaqi[k]
                # i_lo + ceil((i_hi - i_lo) * (C - c_lo) / (c_hi - c_lo)); remainder > 0 -> +1.
                quot, rem = divmod((i_hi - i_lo) * (conc - c_lo), c_hi - c_lo)
                return i_lo + int(quot) + (1 if rem > 0 else 0)
    raise AssertionError("unreachable: caller checks the top breakpoint")


def iaqi(indicator: str, conc: Number, standard: Standard) -> int | None:
    """Individual AQI of one indicator (e.g. ``"pm25_24h"``) under an HJ 633 version.

    Returns None only where the standard gives no index: 2012 ``so2_1h`` above 800 (use the 24h
    value) and 2012 ``o3_8h`` above 800 (use O3 1h). Raises ValueError for an unknown indicator,
    ``pm25_1h``/``pm10_1h`` under 2012, the EPA standard, or a negative/NaN/non-numeric value.
    """
    table = _table_for(indicator, standard)
    c = to_decimal(conc, indicator)
    top = table.conc[-1]
    # Rounding cannot bring anything above top+1 back into the table, and skipping it keeps
    # quantize() away from astronomically large inputs.
    if standard is Standard.HJ633_2026 and c <= top + 1:
        c = c.quantize(_TENTH if pollutant_of(indicator) == "co" else _ONE, ROUND_HALF_EVEN)
    if c > top:
        if indicator == "so2_1h":
            return None if standard is Standard.HJ633_2012 else 200
        if indicator == "o3_8h":
            return None if standard is Standard.HJ633_2012 else 300
        return 500  # above the top of a 0-500 table: undefined in HJ 633, capped (module doc)
    return _interpolate(table, c)


@dataclass(frozen=True)
class Category:
    """An HJ 633 AQI category (level 1..6) with its official colour."""

    level: int
    zh: str
    en: str
    colour: str
    aqi_min: int
    aqi_max: int


@cache
def categories() -> tuple[Category, ...]:
    """The six HJ 633 categories, level 1 first."""
    return tuple(
        Category(int(c["level"]), c["zh"], c["en"], c["colour"], int(c["aqi"][0]), int(c["aqi"][1]))
        for c in _raw_tables()["categories"]
    )


def category(aqi: int) -> Category:
    """Category of an AQI value; anything above 500 is still level 6 (severely polluted)."""
    if aqi < 0:
        raise ValueError(f"AQI cannot be negative: {aqi}")
    for cat in categories():
        if aqi <= cat.aqi_max:
            return cat
    return categories()[-1]


@dataclass(frozen=True)
class AqiResult:
    """An AQI with its parts.

    ``aqi`` is None when nothing could be computed, or when a pollutant is missing and the AQI of
    the others is not above 100 (published as NA). ``iaqi`` holds every index computed, keyed by
    indicator; ``missing`` lists the pollutants that had no index.
    """

    aqi: int | None
    iaqi: dict[str, int]
    category: Category | None
    primary: tuple[str, ...]
    standard: Standard
    missing: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the CLI's ``--json`` output uses it)."""
        cat = self.category
        return {
            "standard": self.standard.value,
            "aqi": self.aqi,
            "category": None
            if cat is None
            else {
                "level": cat.level,
                "zh": cat.zh,
                "en": cat.en,
                "colour": cat.colour,
            },
            "primary": list(self.primary),
            "iaqi": dict(self.iaqi),
            "missing": list(self.missing),
        }


def _collect(
    concs: Mapping[str, Number | None],
    aliases: Mapping[str, str],
    extra: Mapping[str, Number | None],
) -> dict[str, Decimal]:
    """Map input keys (pollutant names, aliases or indicator names) to indicator -> Decimal."""
    values: dict[str, Decimal] = {}
    pairs: Iterable[tuple[str, Number | None]] = [*concs.items(), *extra.items()]
    for key, raw in pairs:
        if raw is None:
            continue
        name = aliases.get(key, key)
        if name not in INDICATORS:
            raise ValueError(
                f"unknown pollutant {key!r} (expected one of: {', '.join(POLLUTANTS)}"
                " or an indicator such as pm25_24h)"
            )
        dec = to_decimal(raw, key)
        if name in values and values[name] != dec:
            raise ValueError(f"{name} given twice with different values")
        values[name] = dec
    return values


def _assemble(values: Mapping[str, int], standard: Standard) -> AqiResult:
    index = {ind: values[ind] for ind in INDICATORS if ind in values}
    missing = tuple(p for p in POLLUTANTS if not any(pollutant_of(i) == p for i in index))
    aqi: int | None = max(index.values()) if index else None
    if aqi is not None and standard is Standard.HJ633_2026:
        aqi = max(aqi, 1)  # HJ 633-2026 range is 1..500
    if aqi is not None and missing and aqi <= 100:
        aqi = None  # incomplete data: publish only when the others already exceed 100
    if aqi is None:
        return AqiResult(None, index, None, (), standard, missing)
    primary = tuple(i for i, v in index.items() if v == aqi) if aqi > 50 else ()
    return AqiResult(aqi, index, category(aqi), primary, standard, missing)


def na_reason(result: AqiResult) -> str | None:
    """Why ``result`` has no AQI (published as NA), in words; None when it has one."""
    if result.aqi is not None:
        return None
    if not result.iaqi:
        return "no value given is an indicator of this standard and period"
    rule = "HJ 633-2026" if result.standard is Standard.HJ633_2026 else "HJ 633-2026's rule; 2012 is silent"
    return (
        f"{', '.join(result.missing)} missing: with incomplete data the AQI is published only above "
        f"100 ({rule}), and the pollutants given reach {max(result.iaqi.values())}"
    )


def hourly_aqi(
    concs: Mapping[str, Number | None],
    standard: Standard,
    *,
    pm25_24h: Number | None = None,
    pm10_24h: Number | None = None,
    so2_24h: Number | None = None,
    o3_8h: Number | None = None,
) -> AqiResult:
    """Real-time (hourly) AQI.

    ``concs`` maps pollutant names (``pm25``, ..., ``o3``: the 1h averages) or indicator names to
    concentrations; None means missing. The keyword arguments are the sliding averages the
    standards need: 2012 takes PM from ``pm25_24h``/``pm10_24h`` (a 1h PM value is ignored, never
    used) and SO2 from ``so2_24h`` when SO2 1h exceeds 800; 2026 uses only 1h values for all six,
    so those three keywords are ignored. ``o3_8h`` counts under both versions when given.
    """
    _require_hj(standard)
    extra = {"pm25_24h": pm25_24h, "pm10_24h": pm10_24h, "so2_24h": so2_24h, "o3_8h": o3_8h}
    values = _collect(concs, {p: f"{p}_1h" for p in POLLUTANTS}, extra)
    out: dict[str, int] = {}

    def put(indicator: str) -> None:
        if indicator in values:
            value = iaqi(indicator, values[indicator], standard)
            if value is not None:
                out[indicator] = value

    if standard is Standard.HJ633_2012:
        for ind in ("pm25_24h", "pm10_24h", "so2_1h", "no2_1h", "co_1h", "o3_1h", "o3_8h"):
            put(ind)
        if "so2_1h" in values and "so2_1h" not in out:
            put("so2_24h")  # SO2 1h > 800 has no 1h IAQI: the 24h value stands in
    else:
        for ind in HOURLY_INDICATORS[Standard.HJ633_2026]:
            put(ind)
    return _assemble(out, standard)


def daily_aqi(concs: Mapping[str, Number | None], standard: Standard) -> AqiResult:
    """Daily AQI from the daily indicators of the version (see ``DAILY_INDICATORS``).

    Keys may be indicator names, ``o3_1h_daily_max``/``o3_8h_daily_max``, or pollutant names
    (``pm25`` -> ``pm25_24h``; ``o3`` -> ``o3_8h``, the 8h daily maximum). Under 2012, O3 8h above
    800 has no IAQI and the O3 1h daily maximum carries O3. An indicator that the version does not
    use in its daily report (e.g. ``o3_1h`` under 2026, any ``_1h`` PM) is rejected.
    """
    _require_hj(standard)
    aliases = {p: f"{p}_24h" for p in POLLUTANTS} | {"o3": "o3_8h"} | DAILY_ALIASES
    values = _collect(concs, aliases, {})
    allowed = DAILY_INDICATORS[standard]
    unused = [ind for ind in values if ind not in allowed]
    if unused:
        raise ValueError(
            f"{', '.join(unused)} not a daily indicator of {standard.value} (expected: {', '.join(allowed)})"
        )
    out: dict[str, int] = {}
    for ind, conc in values.items():
        value = iaqi(ind, conc, standard)
        if value is not None:
            out[ind] = value
    return _assemble(out, standard)
