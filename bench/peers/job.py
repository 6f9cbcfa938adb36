"""The small job every peer does, defined once: parse a reading, fold its PM2.5 into the station's
hourly mean, emit an alarm when that mean crosses the threshold.

Imports only the standard library and orjson: the Quix Streams app runs it in its own venv.
``Tally`` is a peer's count of its work and the result file it hands to ``bench.run``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import orjson

THRESHOLD_UGM3 = 75.0  # the bench backlog's episodes are ~120 µg/m³, its calm hours ~30
HOUR_S = 3600

# a station's state, JSON-friendly so that every framework can put it in its changelog:
# {"hour": start of the hour (epoch s), "sum": PM2.5 sum, "n": readings, "above": mean >= threshold}
State = dict[str, Any]


class Reading(NamedTuple):
    station_id: str
    observed_at: str
    hour: int  # epoch seconds of the start of the hour the reading's interval falls in
    pm25: float


def parse(value: bytes) -> Reading | None:
    """The reading in ``value``, or None when it is not a valid one."""
    try:
        d = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(d, dict) or d.get("schema_version") != 1:
        return None
    sid, obs, interval, values = (
        d.get("station_id"),
        d.get("observed_at"),
        d.get("interval_s"),
        d.get("values"),
    )
    if not (isinstance(sid, str) and isinstance(obs, str) and isinstance(interval, int) and interval > 0):
        return None
    pm25 = values.get("pm25") if isinstance(values, dict) else None
    if not isinstance(pm25, int | float):
        return None
    try:
        observed = datetime.fromisoformat(obs)
    except ValueError:
        return None
    if observed.tzinfo is None:
        return None
    # observed_at closes the interval: the hour is the one the interval starts in
    start = observed.timestamp() - interval
    return Reading(sid, obs, int(start // HOUR_S) * HOUR_S, float(pm25))


def fold(state: State | None, r: Reading) -> tuple[State, bytes | None]:
    """The station's new state and the alarm this reading opens, if any (an upward crossing of the
    hourly mean). A reading of an hour older than the state's is left out (the hour is closed)."""
    if state is not None and r.hour < state["hour"]:
        return state, None
    if state is None or r.hour != state["hour"]:
        total, n = r.pm25, 1
    else:
        total, n = state["sum"] + r.pm25, state["n"] + 1
    was_above = bool(state is not None and state["above"])
    mean = total / n
    above = mean >= THRESHOLD_UGM3
    new = {"hour": r.hour, "sum": total, "n": n, "above": above}
    if not above or was_above:
        return new, None
    alarm = {
        "station_id": r.station_id,
        "hour": r.hour,
        "pm25_mean": round(mean, 1),
        "readings": n,
        "reading_observed_at": r.observed_at,
    }
    return new, orjson.dumps(alarm)


def process(state: State | None, value: bytes) -> tuple[State | None, bytes | None]:
    """One reading: (the state to write, or None for an invalid reading; the alarm, or None)."""
    r = parse(value)
    if r is None:
        return None, None
    return fold(state, r)


@dataclass
class Expected:
    """The job done in the bench process over the readings as they are produced: what every peer
    must report (all readings, these alarms)."""

    readings: int = 0
    rejected: int = 0
    alarms: int = 0
    states: dict[bytes, State] = field(default_factory=dict)

    def tap(self, items: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
        for key, value in items:
            self.readings += 1
            new, alarm = process(self.states.get(key), value)
            if new is None:
                self.rejected += 1
            else:
                self.states[key] = new
            self.alarms += alarm is not None
            yield key, value

    def summary(self) -> dict[str, int]:
        return {
            "readings": self.readings,
            "rejected": self.rejected,
            "alarms": self.alarms,
            "stations": len(self.states),
        }


@dataclass
class Tally:
    """A peer's own count of its work; writes the result file once, when it has processed its N
    readings (atomically: the bench polls for it). The file is the contract with ``bench.run``."""

    n: int
    out: str
    seen: int = 0
    alarms: int = 0
    rejected: int = 0
    first: float = 0.0
    written: bool = False

    def add(self, new: State | None, alarm: bytes | None) -> None:
        if not self.seen:
            self.first = time.time()
        self.seen += 1
        self.rejected += new is None
        self.alarms += alarm is not None

    def finish_if_done(self) -> None:
        if self.seen < self.n or self.written:
            return
        self.written = True
        doc = {
            "first": self.first,
            "last": time.time(),
            "count": self.seen,
            "alarms": self.alarms,
            "rejected": self.rejected,
        }
        tmp = Path(self.out + ".tmp")
        tmp.write_bytes(orjson.dumps(doc))
        os.replace(tmp, self.out)
