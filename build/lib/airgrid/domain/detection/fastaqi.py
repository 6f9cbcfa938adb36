"""HJ 633 real-time AQI at float speed, with the exact answer of :mod:`airgrid.domain.aqi`.

The rule engine needs the AQI of every closed hour; the Decimal module costs tens of microseconds
per hour, too slow for 200,000 readings/s. Here the interpolation runs in binary floats and falls
back to the exact Decimal path whenever the float result could round differently: when it lies
within 1e-7 of an integer (the ceiling is then ambiguous), and for CO under 2026, whose
half-to-even rounding to 0.1 mg/m3 cannot be done faithfully on binary floats. Integer rounding
(PM, SO2, NO2, O3 under 2026) is safe on floats: Python's ``round`` is half-to-even on the exact
binary value, and a float's shortest decimal repr (what the Decimal path sees) lies on the same
side of every .5 as the float itself. The unit tests compare the two paths with hypothesis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cache

from airgrid.domain import aqi as exact
from airgrid.domain.aqi import AqiResult, Standard

_EPS = 1e-7


@cache
def _table(indicator: str, standard: Standard) -> tuple[tuple[float, ...], tuple[int, ...]]:
    pairs = exact.breakpoints(indicator, standard)
    return tuple(float(c) for c, _ in pairs), tuple(i for _, i in pairs)


def iaqi(indicator: str, conc: float, standard: Standard) -> int | None:
    """Same contract and result as :func:`airgrid.domain.aqi.iaqi` for a finite ``conc >= 0``."""
    # ``grid``: the value is a multiple of 1/grid. Breakpoints are whole numbers 2000 apart at most,
    # so the exact IAQI is a fraction with denominator <= grid x 2000: when it is not a whole
    # number it lies >= 1/(grid x 2000) > _EPS from one, and a float result within _EPS of a whole
    # number IS that whole number. Otherwise the Decimal path decides near whole numbers.
    grid = 0
    if standard is Standard.HJ633_2026:
        if indicator[:2] == "co":
            tenths = conc * 10
            nearest = round(tenths)
            if abs(abs(tenths - int(tenths)) - 0.5) < 1e-6:  # a tie: binary floats cannot judge it
                return exact.iaqi(indicator, conc, standard)
            conc = nearest / 10
            grid = 10
        else:
            conc = float(round(conc))
            grid = 1
    elif conc == int(conc):
        grid = 1
    bps, idx = _table(indicator, standard)
    if conc > bps[-1]:
        return exact.iaqi(indicator, conc, standard)  # the overflow rules live in one place
    k = 1
    while conc > bps[k]:
        k += 1
    c_lo = bps[k - 1]
    i_lo = idx[k - 1]
    x = i_lo + (idx[k] - i_lo) * (conc - c_lo) / (bps[k] - c_lo)
    r = math.ceil(x)
    if r - x < _EPS or x - (r - 1) < _EPS:
        if grid:
            return round(x)
        return exact.iaqi(indicator, conc, standard)
    return r


_HOURLY_2012 = ("pm25_24h", "pm10_24h", "so2_1h", "no2_1h", "co_1h", "o3_1h", "o3_8h")
_HOURLY_2026 = exact.HOURLY_INDICATORS[Standard.HJ633_2026]


def hourly(values: Mapping[str, float], standard: Standard) -> AqiResult:
    """Real-time AQI from indicator -> concentration (``pm25_1h``, ``pm25_24h``, ``so2_24h``,
    ``o3_8h``, ...); equal to :func:`airgrid.domain.aqi.hourly_aqi` given the same inputs."""
    out: dict[str, int] = {}
    order = _HOURLY_2012 if standard is Standard.HJ633_2012 else _HOURLY_2026
    for ind in order:
        c = values.get(ind)
        if c is not None:
            v = iaqi(ind, c, standard)
            if v is not None:
                out[ind] = v
    if standard is Standard.HJ633_2012 and "so2_1h" in values and "so2_1h" not in out:
        c = values.get("so2_24h")
        if c is not None:
            v = iaqi("so2_24h", c, standard)
            if v is not None:
                out["so2_24h"] = v  # SO2 1h > 800 has no 1h IAQI: the 24h value stands in
                out = {i: out[i] for i in exact.INDICATORS if i in out}  # canonical order: ties
    return _assemble(out, standard)


_POLLUTANT_OF = {ind: exact.pollutant_of(ind) for ind in exact.INDICATORS}


def _assemble(values: dict[str, int], standard: Standard) -> AqiResult:
    """:func:`airgrid.domain.aqi._assemble` (same rules, same result) without its generic loops:
    ``values`` is already in canonical indicator order here."""
    have = {_POLLUTANT_OF[i] for i in values}
    missing = tuple(p for p in exact.POLLUTANTS if p not in have) if len(have) < 6 else ()
    if not values:
        return AqiResult(None, values, None, (), standard, missing)
    aqi = max(values.values())
    if standard is Standard.HJ633_2026 and aqi < 1:
        aqi = 1  # HJ 633-2026 range is 1..500
    if missing and aqi <= 100:
        return AqiResult(None, values, None, (), standard, missing)
    primary = tuple(i for i, v in values.items() if v == aqi) if aqi > 50 else ()
    return AqiResult(aqi, values, exact.category(aqi), primary, standard, missing)


@cache
def _cuts(standard: Standard, level_iaqi: int) -> dict[str, float]:
    """Per indicator, a concentration at or below which its IAQI cannot exceed ``level_iaqi``
    (the last breakpoint at or below that IAQI, less one unit of the 2026 rounding)."""
    out: dict[str, float] = {}
    for ind in exact.INDICATORS:
        try:
            pairs = exact.breakpoints(ind, standard)
        except ValueError:
            continue  # pm25_1h/pm10_1h under 2012
        margin = 0.1 if ind[:2] == "co" else 1.0
        out[ind] = max(float(c) for c, i in pairs if i <= level_iaqi) - margin
    return out


def may_exceed(values: Mapping[str, float], standard: Standard, level_iaqi: int) -> bool:
    """False only if no indicator's IAQI can exceed ``level_iaqi`` (a necessary condition)."""
    cuts = _cuts(standard, level_iaqi)
    return any(v > cuts.get(ind, math.inf) for ind, v in values.items())
