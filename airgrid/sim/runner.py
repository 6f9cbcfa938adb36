"""Publish simulated readings to Kafka, and play grid workers answering some tasks."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from airgrid.config.settings import Settings
from airgrid.domain.directory import Directory
from airgrid.kafka.client import kafka_client_options
from airgrid.kafka.topics import TopicNames
from airgrid.models.codecs import encode
from airgrid.models.feedback import Feedback, Findings
from airgrid.sim.stations import SimStation, demo_fleet

log = logging.getLogger(__name__)
MALFORMED = (
    b"{not json",
    b'{"station_id": "ST001", "observed_at": "yesterday"}',
    b'{"schema_version": 1, "station_id": "ST001", "observed_at": '
    b'"2026-01-01T00:00:00+08:00", "values": {"pm25": "NaN"}}',
    b"\xff\xfe\x00garbage",
)


@dataclass
class SimConfig:
    stations: int = 12
    step_minutes: int = 10  # event time advanced per tick
    tick_seconds: float = 0.5  # wall time between ticks
    hours_back: float = 36.0  # event time starts this far in the past
    malformed_every: int = 40  # one malformed message every N ticks (0: never)
    ticks: int | None = None  # stop after N ticks (None: until cancelled)
    seed: int = 7


@dataclass
class SimStats:
    readings: int = 0
    malformed: int = 0
    feedback: int = 0
    started: float = field(default_factory=time.perf_counter)


@dataclass
class EventClock:
    """The simulated stations' event time: ``step`` per tick while it is behind the wall clock
    (a compressed replay of the past), then one step per ``step`` of wall time. Each reading
    averages the ``step`` that ends at its ``observed_at``, so a step is never sent twice and never
    before it has ended: once caught up, a tick that has no ended step sends nothing (a reading at
    every tick stamped "now" would re-send the same hour again and again, each claiming a full
    step, and the worker would re-evaluate that hour with every one of them)."""

    t: datetime
    step: timedelta

    def advance(self, now: datetime) -> datetime | None:
        """The end of the next step, or None when that is still in the future."""
        nxt = self.t + self.step
        if nxt > now:
            return None
        self.t = nxt
        return nxt


async def _producer(settings: Settings) -> Any:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        acks="all", enable_idempotence=True, linger_ms=5, **kafka_client_options(settings)
    )
    await producer.start()
    return producer


def _wall_clock() -> datetime:
    return datetime.now(UTC)


async def run_stations(
    settings: Settings,
    directory: Directory,
    cfg: SimConfig,
    stats: SimStats | None = None,
    *,
    clock: Callable[[], datetime] = _wall_clock,
    producer: Any = None,
) -> SimStats:
    """Tick the fleet: one reading per station per tick for each step of event time that has
    ended (``EventClock``), compressed while behind the wall clock, never ahead of it.
    ``producer`` (an aiokafka producer's ``send``/``stop``) is made from ``settings`` if None."""
    stats = stats or SimStats()
    names = TopicNames.of(settings)
    rng = random.Random(cfg.seed)
    ids = sorted(directory.stations)[: cfg.stations]
    start = (clock() - timedelta(hours=cfg.hours_back)).replace(minute=0, second=0, microsecond=0)
    fleet: list[SimStation] = demo_fleet(ids, start, cfg.seed)
    producer = producer if producer is not None else await _producer(settings)
    event_time = EventClock(start, timedelta(minutes=cfg.step_minutes))
    tick = 0
    try:
        while cfg.ticks is None or tick < cfg.ticks:
            t = event_time.advance(clock())
            if t is not None:
                for st in fleet:
                    r = st.reading(t, cfg.step_minutes * 60, rng)
                    await producer.send(names.readings, key=st.station_id.encode(), value=encode(r))
                    stats.readings += 1
            tick += 1
            if cfg.malformed_every and tick % cfg.malformed_every == 0:
                bad = MALFORMED[(tick // cfg.malformed_every) % len(MALFORMED)]
                await producer.send(names.readings, key=b"ST001", value=bad)
                stats.malformed += 1
            await asyncio.sleep(cfg.tick_seconds)
    finally:
        await producer.stop()
    return stats


async def blast(
    settings: Settings,
    station_ids: Iterable[str],
    count: int,
    start: datetime,
    step: timedelta = timedelta(minutes=1),
) -> float:
    """Publish ``count`` readings round-robin as fast as possible; return readings/s."""
    ids = list(station_ids)
    fleet = [SimStation(s, 30.0) for s in ids]
    rng = random.Random(1)
    names = TopicNames.of(settings)
    producer = await _producer(settings)
    began = time.perf_counter()
    try:
        for i in range(count):
            st = fleet[i % len(fleet)]
            at = start + step * (i // len(fleet))
            await producer.send(
                names.readings,
                key=st.station_id.encode(),
                value=encode(st.reading(at, int(step.total_seconds()), rng)),
            )
        await producer.flush()
    finally:
        await producer.stop()
    return count / (time.perf_counter() - began)


class GridWorkers:
    """Answers dispatched tasks like real workers would, and leaves some unanswered so that
    reminders and escalations show: the task's number decides."""

    def __init__(
        self, directory: Directory, answer_ratio: float = 0.5, delay_s: float = 4.0, seed: int = 11
    ) -> None:
        self.directory = directory
        self.answer_ratio = answer_ratio
        self.delay_s = delay_s
        self.rng = random.Random(seed)
        by_grid: dict[str, list[str]] = {}
        for w in directory.workers.values():
            by_grid.setdefault(w.grid, []).append(w.id)
        self.by_grid = by_grid

    def plan(self, event: dict[str, Any]) -> list[tuple[float, Feedback]]:
        """Feedback to send (after a delay) in answer to one task event."""
        if event.get("type") != "dispatched" or self.rng.random() > self.answer_ratio:
            return []
        lineage = event["lineage"]
        worker = self.by_grid.get(lineage["l3"], ["?"])[0]
        reviewer = self.by_grid.get(lineage["l2"], ["?"])[0]
        tid = event["task_id"]
        now = datetime.now(UTC)
        d = self.delay_s
        source = self.rng.choice(
            [
                "construction_dust",
                "coal_burning",
                "catering_fumes",
                "vehicle_exhaust",
                "open_burning",
            ]
        )
        return [
            (
                d,
                Feedback(
                    feedback_id=f"{tid}-ack",
                    task_id=tid,
                    worker_id=worker,
                    action="acknowledge",
                    at=now,
                ),
            ),
            (
                d * 2,
                Feedback(
                    feedback_id=f"{tid}-site",
                    task_id=tid,
                    worker_id=worker,
                    action="on_site",
                    at=now,
                ),
            ),
            (
                d * 3,
                Feedback(
                    feedback_id=f"{tid}-submit",
                    task_id=tid,
                    worker_id=worker,
                    action="submit",
                    at=now,
                    findings=Findings(
                        source_found=True,
                        source_type=source,  # type: ignore[arg-type]
                        measures="source stopped, site watered",
                        sources_inspected=self.rng.randint(1, 6),
                    ),
                ),
            ),
            (
                d * 4,
                Feedback(
                    feedback_id=f"{tid}-close",
                    task_id=tid,
                    worker_id=reviewer,
                    action="approve",
                    at=now,
                    comment="checked, closed",
                ),
            ),
        ]


async def run_workers(
    settings: Settings, directory: Directory, workers: GridWorkers, stats: SimStats | None = None
) -> None:
    """Follow ``task-events`` and send the planned feedback."""
    from aiokafka import AIOKafkaConsumer

    stats = stats or SimStats()
    names = TopicNames.of(settings)
    consumer = AIOKafkaConsumer(
        names.task_events, auto_offset_reset="latest", **kafka_client_options(settings)
    )
    producer = await _producer(settings)
    await consumer.start()
    pending: set[asyncio.Task[None]] = set()

    async def later(delay: float, fb: Feedback) -> None:
        await asyncio.sleep(delay)
        fb = fb.model_copy(update={"at": datetime.now(UTC)})
        await producer.send(names.feedback, key=fb.task_id.encode(), value=encode(fb))
        stats.feedback += 1

    try:
        async for msg in consumer:
            for delay, fb in workers.plan(orjson.loads(msg.value)):
                task = asyncio.create_task(later(delay, fb))
                pending.add(task)
                task.add_done_callback(pending.discard)
    finally:
        for task in pending:
            task.cancel()
        await consumer.stop()
        await producer.stop()
