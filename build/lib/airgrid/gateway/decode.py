"""HJ 212 data records of ambient air (ST 22) to airgrid readings: codes, units, flags, wind, and
``DataTime`` to ``observed_at`` (the END of the averaging interval). Pure; the clock is a parameter.

A reading is built as the JSON the worker reads (``Reading`` of airgrid/models/readings.py); the
unit tests hold every one of them to the worker's own ``parse_reading``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

import orjson

from airgrid.domain.intake import Limits, Rejection
from airgrid.gateway.segment import Field, Record

TimeLabel = Literal["start", "end"]

# HJ 212-2017 codes of ambient air pollutants -> airgrid's pollutants
POLLUTANT_CODES: dict[str, str] = {
    "a34004": "pm25",
    "a34002": "pm10",
    "a21026": "so2",
    "a21004": "no2",
    "a21005": "co",
    "a05024": "o3",
}
WIND_SPEED, WIND_DIRECTION = "a01007", "a01008"
# CN -> the field that carries its value
VALUE_FIELD = {"2011": "Rtd", "2051": "Avg", "2061": "Avg", "2031": "Avg"}
DATA_CNS = frozenset(VALUE_FIELD)
READING_CNS = frozenset({"2011", "2051", "2061"})  # daily data (2031) never becomes a reading
FLAGS = frozenset("NFMSDCTB")  # HJ 212 data flags (airgrid/models/readings.py Hj212Flag)

# Units a station may report in, and the factor to airgrid's (µg/m³; CO mg/m³). Gases in ppb/ppm
# at the reference state of GB 3095-2012 (2018 amendment): 25 °C, 101.325 kPa, 24.45 L/mol.
MOLAR_MASS = {"so2": 64.066, "no2": 46.0055, "co": 28.010, "o3": 47.997}
UNIT_ALIASES = {
    "ug/m3": "ug/m3",
    "µg/m3": "ug/m3",
    "μg/m3": "ug/m3",
    "mg/m3": "mg/m3",
    "ppb": "ppb",
    "ppm": "ppm",
}
DEFAULT_UNITS: dict[str, str] = {
    code: "mg/m3" if p == "co" else "ug/m3" for code, p in POLLUTANT_CODES.items()
}
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?")


def unit_factor(code: str, unit: str) -> float:
    """Multiply a value of ``code`` in ``unit`` by this to get airgrid's unit; ValueError if the
    unit is not possible for the code."""
    pollutant = POLLUTANT_CODES.get(code)
    if pollutant is None:
        raise ValueError(f"{code} is not a pollutant code airgrid reads ({', '.join(POLLUTANT_CODES)})")
    canonical = UNIT_ALIASES.get(unit.strip().replace("³", "3"))
    if canonical is None:
        raise ValueError(f"unit {unit!r} of {code} is not one of ug/m3, mg/m3, ppb, ppm")
    if canonical in ("ppb", "ppm") and pollutant not in MOLAR_MASS:
        raise ValueError(f"{code} ({pollutant}) is particulate: ug/m3 or mg/m3, not {unit}")
    to_ug = {"ug/m3": 1.0, "mg/m3": 1000.0}.get(canonical)
    if to_ug is None:
        to_ug = MOLAR_MASS[pollutant] / 24.45 * (1.0 if canonical == "ppb" else 1000.0)
    return to_ug / 1000.0 if pollutant == "co" else to_ug


@dataclass(frozen=True)
class Profile:
    """How one station's data is read: its zone, time labelling, intervals, units, and which
    data commands become readings."""

    zone: ZoneInfo
    time_label: TimeLabel = "start"
    minute_interval_s: int = 600
    rtd_interval_s: int = 30
    units: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_UNITS))
    reading_cns: frozenset[str] = frozenset({"2051"})
    factors: Mapping[str, float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        factors = {
            code: unit_factor(code, self.units.get(code, unit)) for code, unit in DEFAULT_UNITS.items()
        }
        object.__setattr__(self, "factors", factors)

    def interval(self, cn: str) -> int:
        return self.rtd_interval_s if cn == "2011" else self.minute_interval_s if cn == "2051" else 3600


@dataclass
class Decoded:
    """The readings of one message (JSON, with their event time), and what was left out."""

    readings: list[tuple[bytes, datetime]]
    dropped: Counter[str]


def merge_records(packets: list[list[Record]]) -> list[Record] | Rejection:
    """Records of a split message in packet order: a packet that starts without ``DataTime``
    continues the previous packet's last record, and records with the same ``DataTime`` merge
    (a field given twice keeps its last value)."""
    merged: dict[str, list[Field]] = {}
    last: str | None = None
    for records in packets:
        for when, fields in records:
            key = when if when is not None else last
            if key is None:
                return Rejection("bad_time", "values before any DataTime")
            merged.setdefault(key, []).extend(fields)
            last = key
    return list(merged.items())


@lru_cache(maxsize=8192)
def local_time(text: str, zone: ZoneInfo) -> datetime | None:
    """``yyyyMMddHHmmss`` in ``zone``; None if malformed or a local time that does not exist
    (a daylight-saving gap). An ambiguous time (the hour repeated in autumn) is the first."""
    if len(text) != 14 or not text.isdigit():
        return None
    try:
        naive = datetime(  # noqa: DTZ001 - made aware on the next line, in the station's zone
            int(text[:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]), int(text[10:12]), int(text[12:])
        )
    except ValueError:
        return None
    aware = naive.replace(tzinfo=zone)
    if aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive:
        return None
    return aware


@lru_cache(maxsize=8192)
def _observed(text: str, zone: ZoneInfo, shift: int) -> tuple[datetime, str, float] | None:
    """observed_at of a DataTime: the datetime, its ISO text and its timestamp (stations of a
    city report the same few times: cached)."""
    start = local_time(text, zone)
    if start is None:
        return None
    at = (start.astimezone(UTC) + timedelta(seconds=shift)).astimezone(zone) if shift else start
    return at, at.isoformat(), at.timestamp()


def _number(text: str) -> float | None:
    """A decimal number as stations write them; never NaN, infinity, "1_000" or " 1" (all of
    which ``float`` would take)."""
    digits = text[1:] if text[:1] in ("-", "+") else text
    if not digits.replace(".", "", 1).isdigit():  # isdigit is ASCII-safe only with isascii
        if not _NUMBER.fullmatch(text):
            return None
    elif not digits.isascii():
        return None
    value = float(text)
    return value if value - value == 0.0 else None


def to_readings(
    station_id: str,
    cn: str,
    records: list[Record],
    profile: Profile,
    now: datetime,
    limits: Limits,
) -> Decoded | Rejection:
    """The readings of data records of command ``cn`` (2011, 2051, 2061) for one station."""
    interval = profile.interval(cn)
    shift = interval if profile.time_label == "start" and cn != "2011" else 0  # 2011: an instant
    value_field = VALUE_FIELD[cn]
    factors = profile.factors
    codes = POLLUTANT_CODES
    now_ts = now.timestamp()
    latest = now_ts + limits.max_future.total_seconds()
    earliest = now_ts - limits.max_age.total_seconds()
    out: list[tuple[bytes, datetime]] = []
    dropped: Counter[str] = Counter()
    for when, fields in records:
        if when is None:
            return Rejection("bad_time", "values without a DataTime")
        observed = _observed(when, profile.zone, shift)
        if observed is None:
            return Rejection(
                "bad_time", f"DataTime {when[:20]!r} is no yyyyMMddHHmmss time in {profile.zone.key}"
            )
        at, iso, ts = observed
        if ts > latest:
            return Rejection(
                "bad_time",
                f"observed_at {iso} (DataTime {when}, labelling the {profile.time_label} of "
                f"{interval} s) is more than {int(limits.max_future.total_seconds())} s ahead of the clock",
            )
        if ts < earliest:
            return Rejection("bad_time", f"observed_at {iso} is older than {limits.max_age.days} days")
        raw_values: dict[str, tuple[str, str]] = {}
        flags: dict[str, str] = {}
        speed = direction = None
        wind_flags = "NN"
        for code, sub, raw in fields:
            pollutant = codes.get(code)
            if pollutant is not None:
                if sub == value_field:
                    raw_values[pollutant] = (code, raw)
                elif sub == "Flag":
                    if raw == "N":
                        flags.pop(pollutant, None)
                    elif raw in FLAGS:
                        flags[pollutant] = raw
                    else:
                        return Rejection(
                            "bad_value", f"{code}-Flag={raw[:10]!r} is not an HJ 212 data flag (NFMSDCTB)"
                        )
            elif code == WIND_SPEED:
                if sub == value_field:
                    speed = raw
                elif sub == "Flag":
                    wind_flags = raw[:1] + wind_flags[1]
            elif code == WIND_DIRECTION:
                if sub == value_field:
                    direction = raw
                elif sub == "Flag":
                    wind_flags = wind_flags[0] + raw[:1]
            elif sub == value_field:
                dropped["meteo" if code.startswith("a01") else "other_code"] += 1
        values: dict[str, float] = {}
        for pollutant, (code, raw) in raw_values.items():
            value = _number(raw)
            if value is None:
                return Rejection("bad_value", f"{code}-{value_field}={raw[:20]!r} is not a finite number")
            factor = factors[code]
            values[pollutant] = value if factor == 1.0 else round(value * factor, 3)
        if not values:
            dropped["record_without_pollutants"] += 1
            continue
        doc: dict[str, object] = {
            "schema_version": 1,
            "station_id": station_id,
            "observed_at": iso,
            "interval_s": interval,
            "values": values,
        }
        if flags:
            if len(flags) != sum(p in values for p in flags):
                dropped["no_value_field"] += sum(p not in values for p in flags)
                flags = {p: f for p, f in flags.items() if p in values}
            if flags:
                doc["flags"] = flags
        if speed is not None or direction is not None or wind_flags != "NN":
            wind = _wind(speed, direction, wind_flags, dropped)
            if wind is not None:
                doc["wind"] = wind
        out.append((orjson.dumps(doc), at))
    if not out:
        return Rejection("no_values", f"no value of {', '.join(POLLUTANT_CODES)} in the message")
    return Decoded(out, dropped)


def _wind(
    speed_raw: str | None, direction_raw: str | None, flags: str, dropped: Counter[str]
) -> dict[str, float] | None:
    speed = _number(speed_raw) if speed_raw is not None else None
    direction = _number(direction_raw) if direction_raw is not None else None
    if (
        speed is None
        or direction is None
        or flags.strip("NS")  # a wind value flagged other than normal or manual
        or not 0 <= speed <= 100
        or not 0 <= direction <= 360
    ):
        dropped["wind"] += 1  # incomplete, flagged or impossible wind: the reading goes without it
        return None
    return {"speed": speed, "direction": 0.0 if direction == 360 else direction}
