"""Averages over a station's ring of hourly values, and the AQI of an hour or a day.

Validity follows GB 3095: an hourly value needs 45 minutes of data (applied when the hour is
built), a 24 h or calendar-day average 20 valid hours, an O3 8 h average 6 valid hours.
"""

from __future__ import annotations

from typing import Any

from airgrid.domain import aqi as exact
from airgrid.domain import epa
from airgrid.domain.aqi import AqiResult, Standard
from airgrid.domain.detection import fastaqi
from airgrid.domain.detection.compiled import CUTOVER_TS, RuleSet

HOUR = 3600
GRID = 1e9  # averages settle to multiples of 1e-9


def settle(x: float) -> float:
    """An average rid of binary-float noise: the nearest multiple of 1e-9.

    The standards compare averages with limits and round them half to even (HJ 633-2026) before
    the lookup, so 74.99999999999999 for an exact 75.0 (or 60.49999999999999 for 60.5) would change
    an alarm or an IAQI. The readings carry at most three decimals, so an exact average is a
    fraction whose denominator is at most 10^3 x the seconds or hours averaged: it lies more than
    1e-8 from every limit, breakpoint and rounding tie it is not equal to, while the noise of a sum
    of a few hundred floats is below 1e-11. Settling to 1e-9 therefore gives the exact value
    wherever the comparison depends on it. (``round(x * 1e9) / 1e9``: exact below 9e6, four times
    cheaper than ``round(x, 9)``.)"""
    return round(x * GRID) / GRID


_ONE_HOUR = {p: f"{p}_1h" for p in exact.POLLUTANTS}


def standard_of(rs: RuleSet, hour_ts: float) -> Standard:
    """The AQI standard of an hour: configured, or by the China date (2026 from 2026-03-01)."""
    if rs.aqi_standard == "auto":
        return Standard.HJ633_2026 if hour_ts >= CUTOVER_TS else Standard.HJ633_2012
    return Standard(rs.aqi_standard)


def china_day(hour: int) -> int:
    """China calendar day number (UTC+8, no DST) of an hour number."""
    return (hour + 8) // 24


def day_hours(day: int) -> range:
    return range(day * 24 - 8, day * 24 + 16)


# the highest AQI of the category below each level: an hour at ``level`` has an AQI above it
_LEVEL_FLOOR = {c.level + 1: c.aqi_max for c in exact.categories()}


class HourView:
    """Lazily computed, memoised aggregates around hour ``h`` (one per closed hour)."""

    __slots__ = ("_aqi", "_ind", "_unreachable", "h", "ring", "rs", "vals", "windows")

    def __init__(
        self,
        ring: dict[int, dict[str, float]],
        h: int,
        rs: RuleSet,
        windows: dict[tuple[int, str], list[Any]] | None = None,
    ) -> None:
        self.ring = ring
        # the station's running window sums; a throw-away dict when there is no state to carry
        self.windows = {} if windows is None else windows
        self.h = h
        self.rs = rs
        self.vals = ring.get(h, {})
        self._unreachable = 99  # lowest AQI level known to be out of reach this hour
        self._ind: tuple[Standard, dict[str, float]] | None = None
        self._aqi: AqiResult | epa.EpaResult | bool | None = False

    def avg(self, pollutant: str, hours: int) -> float | None:
        """Sliding average of ``pollutant`` over the ``hours`` hours ending with ``h``, or None
        if not valid (fewer valid hours than the period needs)."""
        h, ring = self.h, self.ring
        key = (hours, pollutant)
        w = self.windows.get(key)
        if w is None or w[0] != h:
            if w is not None and w[0] == h - 1 and h % 24:  # slide by one hour
                leaving = ring.get(h - hours)
                if leaving is not None:
                    v = leaving.get(pollutant)
                    if v is not None:  # it entered the window earlier
                        w[1] -= v
                        w[2] -= 1
                v = self.vals.get(pollutant)
                if v is not None:
                    w[1] += v
                    w[2] += 1
                w[0] = h
            else:  # after a gap, a revision, or once a day (no float drift): one full pass
                total, n = window_sum(ring, range(h - hours + 1, h + 1), pollutant)
                w = self.windows[key] = [h, total, n]
        n = w[2]
        minimum = self.rs.min_o3_8h_hours if hours == 8 else self.rs.min_day_hours
        return round(w[1] / n * GRID) / GRID if n >= minimum and n else None  # settle()

    def baseline(self, pollutant: str, hours: int, minimum: int) -> float | None:
        """Mean of the ``hours`` hours before ``h`` (the station's own recent level)."""
        return mean(self.ring, range(self.h - hours, self.h), pollutant, minimum)

    def indicators(self, standard: Standard) -> dict[str, float]:
        """The AQI indicators of the hour under ``standard`` (memoised: several rules ask)."""
        if self._ind is not None and self._ind[0] is standard:
            return self._ind[1]
        vals = self.vals
        out = {_ONE_HOUR[p]: v for p, v in vals.items()}
        if standard is Standard.HJ633_2012 or standard is Standard.EPA_2024:
            for p in ("pm25", "pm10", "so2"):
                if p != "so2" or vals.get("so2", 0.0) > 800:  # 2012: SO2 24 h only above 800
                    v = self.avg(p, 24)
                    if v is not None:
                        out[f"{p}_24h"] = v
        if "o3" in vals:
            v = self.avg("o3", 8)
            if v is not None:
                out["o3_8h"] = v
        self._ind = (standard, out)
        return out

    def may_reach(self, level: int) -> bool:
        """False only if the hour's AQI surely stays below category ``level`` (a cheap test
        before computing it: no indicator is near the concentration of that level)."""
        if not self.vals or level >= self._unreachable:
            return False
        standard = standard_of(self.rs, self.h * HOUR)
        if standard is Standard.EPA_2024:
            return True
        if fastaqi.may_exceed(self.indicators(standard), standard, _LEVEL_FLOOR[level]):
            return True
        self._unreachable = level  # and every level above it
        return False

    def aqi(self) -> AqiResult | epa.EpaResult | None:
        """Real-time AQI of the hour (fast path, exact result); None when there is no data."""
        if self._aqi is not False:
            return self._aqi  # type: ignore[return-value]
        result: AqiResult | epa.EpaResult | None = None
        if self.vals:
            standard = standard_of(self.rs, self.h * HOUR)
            if standard is Standard.EPA_2024:
                result = _epa(self)
            else:
                result = fastaqi.hourly(self.indicators(standard), standard)
        self._aqi = result
        return result


def window_sum(ring: dict[int, dict[str, float]], hours: range, pollutant: str) -> tuple[float, int]:
    """Sum and count of the valid hourly values of ``pollutant`` in ``hours``."""
    total = 0.0
    n = 0
    for h in hours:
        slot = ring.get(h)
        if slot is not None:
            v = slot.get(pollutant)
            if v is not None:
                total += v
                n += 1
    return total, n


def mean(ring: dict[int, dict[str, float]], hours: range, pollutant: str, minimum: int) -> float | None:
    """Settled mean of ``pollutant`` over ``hours``, or None with fewer than ``minimum`` values."""
    total, n = window_sum(ring, hours, pollutant)
    return settle(total / n) if n >= minimum and n else None


def _epa(view: HourView) -> epa.EpaResult | None:
    """US EPA: PM from the NowCast of the last 12 hours, O3/CO 8 h averages, SO2/NO2 1 h."""
    concs: dict[str, Any] = {}
    for p, ind in (("pm25", "pm25_24h"), ("pm10", "pm10_24h")):
        hours = [view.ring.get(view.h - k, {}).get(p) for k in range(12)]
        now = epa.nowcast(hours)
        if now is not None:
            concs[ind] = now
    vals = view.vals
    for p, ind in (("so2", "so2_1h"), ("no2", "no2_1h"), ("o3", "o3_1h")):
        if p in vals:
            concs[ind] = vals[p]
    o3 = view.avg("o3", 8)
    if o3 is not None:
        concs["o3_8h"] = o3
    co = view.avg("co", 8)
    if co is not None:
        concs["co_8h"] = co
    result = epa.epa_result(concs, from_ugm3=True)
    return result if result.aqi is not None else None


def aqi_level(result: AqiResult | epa.EpaResult) -> int:
    assert result.category is not None
    return result.category.level


def aqi_fields(result: AqiResult | epa.EpaResult | None, standard: Standard) -> dict[str, Any]:
    """The AQI fields of an alarm event."""
    if result is None or result.aqi is None or result.category is None:
        return {"aqi_standard": standard.value}
    cat = result.category
    name = cat.en if isinstance(cat, exact.Category) else cat.name
    return {
        "aqi": result.aqi,
        "aqi_standard": standard.value,
        "category": name,
        "category_level": cat.level,
        "primary": list(result.primary),
        "iaqi": dict(result.iaqi),
    }


def daily_result(ring: dict[int, dict[str, float]], day: int, rs: RuleSet) -> tuple[Standard, Any]:
    """Daily AQI (HJ 633) of a China calendar day from the ring; EPA has no daily AQI here."""
    hours = day_hours(day)
    standard = standard_of(rs, hours[0] * HOUR)
    if standard is Standard.EPA_2024:
        return standard, None
    concs: dict[str, float] = {}
    for p in ("pm25", "pm10", "so2", "no2", "co"):
        v = mean(ring, hours, p, rs.min_day_hours)
        if v is not None:
            concs[f"{p}_24h"] = v
    # HJ 663: the O3 8 h daily maximum takes the 17 windows that end at 08:00 ... 24:00 of the
    # day (none starts the day before) and needs 14 of them valid
    eights = [mean(ring, range(h - 7, h + 1), "o3", rs.min_o3_8h_hours) for h in hours[7:]]
    valid8 = [v for v in eights if v is not None]
    if len(valid8) >= 14:
        concs["o3_8h_daily_max"] = max(valid8)
    ones = [ring.get(h, {}).get("o3") for h in hours]
    ones_valid = [v for v in ones if v is not None]
    if standard is Standard.HJ633_2012 and len(ones_valid) >= rs.min_day_hours:
        concs["o3_1h_daily_max"] = max(ones_valid)
    return standard, exact.daily_aqi(concs, standard) if concs else None
