"""What detection remembers of one station, small and JSON-able (a changelog-backed table value).

Times are epoch seconds and hours are hour numbers (``epoch // 3600``): cheaper to compare and to
serialise than datetimes. The state is bounded: open hour buckets only within the late grace, a
ring of at most ``RING_HOURS`` hourly averages, one flat-line counter per pollutant, one episode per
open alarm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RING_HOURS = 48  # a calendar day plus the sliding 24 h before it: day averages and baselines


@dataclass(slots=True)
class Bucket:
    """Readings of one clock hour: weighted sums and covered seconds per pollutant."""

    sums: dict[str, float] = field(default_factory=dict)
    secs: dict[str, float] = field(default_factory=dict)
    seen: list[float] = field(default_factory=list)  # observed_at of each reading (duplicates)
    closed: bool = False


@dataclass(slots=True)
class Episode:
    """One open alarm episode, and what its subscribers were last told (``updated`` is sent only
    on a material change against these, see ``episodes.Emitter``)."""

    alarm_id: str
    opened_at: float
    seq: int = 0  # events sent (the last event_id's suffix)
    peak: float = 0.0  # the worst value sent in an event
    calm: int = 0
    sent: float = 0.0  # event time (window end) of the last event sent: the heartbeat clock
    # what else the last event said, in four or five characters: severity rank, AQI category
    # level (0: none), averaging period; e.g. "251h" (major, level 5, 1 h)
    mark: str = ""


@dataclass(slots=True)
class StationState:
    last_obs: float | None = None  # newest observed_at: the station's event-time clock
    last_arrival: float | None = None  # wall clock when the newest reading was applied
    current: int | None = None  # hour number of the newest bucket
    buckets: dict[int, Bucket] = field(default_factory=dict)
    ring: dict[int, dict[str, float]] = field(default_factory=dict)  # hour -> valid hourly averages
    flat: dict[str, list[float]] = field(default_factory=dict)  # pollutant -> [value, run length]
    bad: dict[str, int] = field(default_factory=dict)  # pollutant -> impossible readings in a row
    episodes: dict[str, Episode] = field(default_factory=dict)
    day_done: int | None = None  # last China calendar day evaluated
    # where the newest applied reading came from, [partition, offset] of the readings topic: a
    # reading at or before it is a replay (after a restart or a rebalance), not a late arrival
    source: list[int] | None = None
    # Derived, never stored: sliding-window sums, (window hours, pollutant) -> [hour, sum, count],
    # for the windows the rules ask for, kept up to date hour by hour so a closed hour costs
    # O(1) per window, not O(window), while the state object lives (the backtest, the benchmark,
    # ingest's cache of parsed states). A state read back from its table row sums its windows
    # afresh at its next closed hour (3 windows of 8-24 hours: a few microseconds).
    windows: dict[tuple[int, str], list[Any]] = field(default_factory=dict, compare=False, repr=False)

    def replays(self, partition: int, offset: int) -> bool:
        """Was the reading at ``partition``/``offset`` applied already (a replay)?"""
        return self.source is not None and self.source[0] == partition and offset <= self.source[1]

    @property
    def last_hourly(self) -> dict[str, float]:
        """Valid hourly averages of the newest closed hour (for display and tests)."""
        if not self.ring:
            return {}
        return {p: round(v, 3) for p, v in self.ring[max(self.ring)].items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "lo": self.last_obs,
            "la": self.last_arrival,
            "cur": self.current,
            "b": {str(h): [b.sums, b.secs, b.seen, b.closed] for h, b in self.buckets.items()},
            "r": {str(h): v for h, v in self.ring.items()},
            "f": self.flat,
            "ib": self.bad,
            "e": episodes_to_json(self.episodes),
            "dd": self.day_done,
            "src": self.source,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> StationState:
        if not raw or "b" not in raw:  # empty, or a value of the pre-2026.2 layout: start afresh
            return cls()
        return cls(
            last_obs=raw.get("lo"),
            last_arrival=raw.get("la"),
            current=raw.get("cur"),
            buckets={
                int(h): Bucket(dict(v[0]), dict(v[1]), list(v[2]), bool(v[3])) for h, v in raw["b"].items()
            },
            ring={int(h): dict(v) for h, v in raw.get("r", {}).items()},
            flat={p: list(v) for p, v in raw.get("f", {}).items()},
            bad=dict(raw.get("ib", {})),
            episodes=episodes_from_json(raw.get("e", {})),
            day_done=raw.get("dd"),
            source=raw.get("src"),
        )


def episodes_to_json(episodes: dict[str, Episode]) -> dict[str, list[Any]]:
    return {k: [e.alarm_id, e.opened_at, e.seq, e.peak, e.calm, e.sent, e.mark] for k, e in episodes.items()}


def episodes_from_json(raw: dict[str, list[Any]]) -> dict[str, Episode]:
    return {k: _episode(v) for k, v in raw.items()}


def _episode(v: list[Any]) -> Episode:
    """An episode from its stored list; one stored before ``sent``/``mark`` existed (five
    fields) counts as last told at its opening, with nothing else known."""
    if len(v) < 7:
        return Episode(v[0], v[1], v[2], v[3], v[4], v[1], "")
    return Episode(v[0], v[1], v[2], v[3], v[4], v[5], v[6])
