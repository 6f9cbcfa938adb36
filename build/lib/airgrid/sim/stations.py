"""Synthetic station readings: a diurnal pattern with noise, and pollution episodes. Pure."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from airgrid.models.readings import Reading, Wind


@dataclass(frozen=True)
class Episode:
    """PM2.5 raised by ``extra`` µg/m³ between ``start`` and ``end`` (event time)."""

    start: datetime
    end: datetime
    extra: float


@dataclass
class SimStation:
    station_id: str
    base_pm25: float
    episodes: tuple[Episode, ...] = ()

    def reading(self, at: datetime, interval_s: int, rng: random.Random) -> Reading:
        hour = at.hour + at.minute / 60
        # morning and evening peaks, as traffic and heating give real stations
        diurnal = (
            1
            + 0.25 * math.cos((hour - 8) / 24 * 2 * math.pi)
            + 0.2 * math.cos((hour - 20) / 12 * 2 * math.pi)
        )
        pm25 = self.base_pm25 * diurnal
        for ep in self.episodes:
            if ep.start <= at < ep.end:
                pm25 += ep.extra
        pm25 = max(1.0, pm25 * rng.uniform(0.92, 1.08))
        pm10 = pm25 * rng.uniform(1.4, 1.9)
        return Reading(
            station_id=self.station_id,
            observed_at=at,
            interval_s=interval_s,
            values={
                "pm25": round(pm25, 1),
                "pm10": round(pm10, 1),
                "so2": round(rng.uniform(4, 15), 1),
                "no2": round(rng.uniform(20, 60), 1),
                "co": round(rng.uniform(0.4, 1.2), 2),
                "o3": round(rng.uniform(30, 110), 1),
            },
            wind=Wind(speed=round(rng.uniform(0.5, 5), 1), direction=round(rng.uniform(0, 359), 0)),
        )


def demo_fleet(station_ids: list[str], start: datetime, seed: int = 7) -> list[SimStation]:
    """Stations with clean air; every third one has recurring pollution episodes."""
    rng = random.Random(seed)
    fleet = []
    for i, sid in enumerate(station_ids):
        episodes: tuple[Episode, ...] = ()
        if i % 3 == 0:  # an episode every 10 hours, a few hours long
            first = start + timedelta(hours=2 + (i % 5))
            episodes = tuple(
                Episode(b, b + timedelta(hours=3 + i % 4), 80 + 40 * (i % 2))
                for b in (first + timedelta(hours=10 * k) for k in range(12))
            )
        fleet.append(SimStation(sid, base_pm25=rng.uniform(18, 40), episodes=episodes))
    return fleet
