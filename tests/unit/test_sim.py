"""The simulated stations: event time compressed while behind the clock, then one step per step
of wall time, so the worker never re-evaluates the same hour (issue 15, section 1)."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from airgrid.config.settings import load_settings
from airgrid.domain.detection import engine
from airgrid.domain.detection.compiled import compile_rules
from airgrid.domain.detection.state import StationState
from airgrid.domain.directory import Directory
from airgrid.domain.rules import load_rules
from airgrid.models.readings import Reading
from airgrid.sim.runner import EventClock, SimConfig, run_stations

WALL = datetime(2026, 12, 1, 9, 17, 30, tzinfo=UTC)


class ListProducer:
    """Collects what would be sent to Kafka (the loop under test is the simulator's, not Kafka)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent.append((topic, key, value))

    async def stop(self) -> None:
        pass


def test_event_clock_never_sends_a_step_twice_nor_before_it_ended() -> None:
    start = datetime(2026, 12, 1, 8, tzinfo=UTC)
    clock = EventClock(start, timedelta(minutes=10))
    ends = [clock.advance(WALL + timedelta(seconds=30 * i)) for i in range(60)]  # 09:17:30 ...
    sent = [t for t in ends if t is not None]
    # behind the clock: one step per tick (08:10 ... 09:20), then one per 10 minutes of wall time
    assert ends[:8] == [start + timedelta(minutes=10 * (i + 1)) for i in range(8)]
    assert ends[8] is None  # caught up at 09:21:30: nothing until 09:30 has passed
    assert all(b - a == timedelta(minutes=10) for a, b in itertools.pairwise(sent))
    assert sent[-1] == datetime(2026, 12, 1, 9, 40, tzinfo=UTC)  # the wall clock ended at 09:47


def test_a_caught_up_simulator_makes_the_worker_evaluate_each_hour_once(tmp_path: Path) -> None:
    """60 ticks 30 s of wall time apart, starting 1-2 hours behind: every reading is its own
    10-minute step, none ahead of the clock, and the engine closes each hour once and never has
    to re-evaluate one (no `late_folded`). Before the fix every caught-up tick re-sent "now"."""
    settings = load_settings(store="memory", data_dir=tmp_path)
    directory = Directory.load(settings.grid_file)
    ticks = iter(WALL + timedelta(seconds=30 * i) for i in range(10_000))
    now: list[datetime] = []

    def clock() -> datetime:
        now.append(next(ticks))
        return now[-1]

    producer = ListProducer()
    cfg = SimConfig(stations=3, tick_seconds=0, hours_back=1.0, malformed_every=0, ticks=60)
    stats = asyncio.run(run_stations(settings, directory, cfg, clock=clock, producer=producer))
    readings = [Reading.model_validate_json(v) for _, _, v in producer.sent]
    assert stats.readings == len(readings) > 0
    by_station: dict[str, list[datetime]] = {}
    for r in readings:
        by_station.setdefault(r.station_id, []).append(r.observed_at)
    for times in by_station.values():
        assert all(b - a == timedelta(minutes=10) for a, b in itertools.pairwise(times))
        assert times[-1] <= now[-1]
    rs = compile_rules(load_rules(settings.rules_file), grace_s=settings.late_grace_seconds)
    states: dict[str, StationState] = {}
    outcomes: Counter[str] = Counter()
    for r in readings:
        state = states.setdefault(r.station_id, StationState())
        _, _, outcome = engine.evaluate(state, r, rs, WALL.timestamp())
        outcomes[outcome] += 1
    assert outcomes == {"accepted": len(readings)}
