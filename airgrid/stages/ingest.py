"""Ingest and detect: validate each reading, fold it into the station's state, emit alarms.

One stream carries ``readings`` and ``station-commands`` (both keyed and partitioned by station,
so the same worker owns a station's readings, its commands and its table row). Malformed readings
go to ``readings.dlq`` with the reason and origin, and so do readings later than the late grace
(``too_late``): the station's state is untouched by either. The silence sweep looks for silent
stations on a timer; as a timer may not write a table, it sends a ``check_silence`` command that
this stage applies.

The order per reading is what makes a kill lose nothing: replay check (the reading's offset is in
the state already), evaluate, publish the alarms and wait until Kafka has them, and only then write
the state. A crash in between replays the reading against the old state and re-sends the same
event ids (a duplicate subscribers drop), where the other order could lose an alarm for good.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from airgrid.domain.detection import engine
from airgrid.domain.detection.compiled import RuleBook, RuleSet
from airgrid.domain.detection.state import StationState
from airgrid.domain.detection.warnings import StationWarnings
from airgrid.domain.directory import Directory
from airgrid.domain.intake import Limits, Rejection, parse_reading
from airgrid.metrics import Metrics
from airgrid.models.alarms import AlarmEvent
from airgrid.models.codecs import encode, first_line
from airgrid.models.readings import Reading, StationCommand
from airgrid.stages.ports import Clock, Delivery, Outlet, Table, refuse

log = logging.getLogger(__name__)


class Ingest:
    """Handles one message of ``readings`` or ``station-commands``."""

    def __init__(
        self,
        *,
        stations: Table,
        alarms: Outlet,
        readings_dlq: Outlet,
        commands_dlq: Outlet,
        commands_topic: str,
        rulebook: RuleBook,
        warnings: StationWarnings,
        directory: Directory,
        limits: Limits,
        metrics: Metrics,
        clock: Clock,
        release: Callable[[], None] = lambda: None,
    ) -> None:
        self.stations = stations
        self.alarms = alarms
        self.readings_dlq = readings_dlq
        self.commands_dlq = commands_dlq
        self.commands_topic = commands_topic
        self.rulebook = rulebook
        self.warnings = warnings
        self.known = directory.stations.__contains__
        self.limits = limits
        self.m = metrics
        self.clock = clock
        self.release = release  # sends the producer's lingering batches now

    def rules_for(self, station: str, now: datetime) -> RuleSet:
        """The rule profile of the warning level in force over the station."""
        return self.rulebook.for_level(self.warnings.level(station, now))

    async def handle(self, msg: Delivery) -> None:
        now = self.clock()
        if msg.topic == self.commands_topic:
            await self.on_command(msg, now)
        else:
            await self.on_reading(msg, now)

    async def on_reading(self, msg: Delivery, now: datetime) -> None:
        result = parse_reading(msg.value, now, self.limits, self.known)
        if isinstance(result, Rejection):
            await self.to_dlq(msg, result.code, result.reason, now)
            self.m.readings.labels("rejected").inc()
            return
        station = result.station_id
        state = StationState.from_json(self.stations.get(station))
        if state.replays(msg.partition, msg.offset):
            # delivered again after a restart or a rebalance: already in the state, its alarms sent
            self.m.readings.labels("replayed").inc()
            return
        newest = state.last_obs
        rules = self.rules_for(station, now)
        state, events, outcome = engine.evaluate(state, result, rules, now.timestamp())
        if outcome == "late":
            await self.to_dlq(msg, "too_late", too_late(result, newest, rules.grace_s), now)
        await self.publish(station, events, now)
        if outcome not in ("late", "duplicate"):  # those leave the state as it was
            state.source = [msg.partition, msg.offset]
            self.stations[station] = state.to_json()
        self.m.readings.labels(outcome).inc()

    async def on_command(self, msg: Delivery, now: datetime) -> None:
        try:
            cmd = StationCommand.model_validate(orjson.loads(msg.value or b""))
        except ValueError as exc:  # JSON or validation: only airgrid writes this topic
            reason = f"unreadable station command: {first_line(exc)}"
            await refuse(self.commands_dlq, msg, "unreadable", reason, now)
            self.m.dlq.labels("commands", "unreadable").inc()
            return
        current = self.stations.get(cmd.station_id)
        if current is None:
            return
        state = StationState.from_json(current)
        rules = self.rules_for(cmd.station_id, now)
        events = engine.check_silence(state, cmd.station_id, rules, now.timestamp())
        if events:
            await self.publish(cmd.station_id, events, now)
            self.stations[cmd.station_id] = state.to_json()

    async def publish(self, station: str, events: list[AlarmEvent], now: datetime) -> None:
        """Send the alarms and wait until Kafka has them (the state is written only after)."""
        if not events:
            return
        key = station.encode()
        acks = []
        for alarm in events:
            acks.append(await self.alarms.send(key=key, value=encode(alarm)))
            self.m.alarms.labels(alarm.kind, alarm.rule_id, alarm.pollutant or "", alarm.severity).inc()
            self.m.detection_latency.observe(max(0.0, (self.clock() - now).total_seconds()))
        self.release()  # no linger: the state is written only after these acks
        await asyncio.gather(*acks)

    async def to_dlq(self, msg: Delivery, code: str, reason: str, now: datetime) -> None:
        await refuse(self.readings_dlq, msg, code, reason, now)
        self.m.dlq.labels("readings", code).inc()


class SilenceSweep:
    """A timer's look at every station this worker owns: sends ``check_silence`` for each that
    looks silent (a timer may not write a table; ingest applies the command)."""

    def __init__(self, ingest: Ingest, commands: Outlet) -> None:
        self.ingest = ingest
        self.commands = commands

    @property
    def interval_s(self) -> float | None:
        """How often to look: often enough to fire within ~10 % of the shortest silence
        threshold, never more than once a second; None without a silence rule."""
        shortest = self.ingest.rulebook.min_silence_s
        return None if shortest is None else min(60.0, max(1.0, shortest / 10))

    async def sweep(self) -> int:
        """Send ``check_silence`` for every locally owned station that looks silent; how many."""
        now = self.ingest.clock()
        sent = 0
        for station, raw in list(self.ingest.stations.items()):
            if silence_due(raw, self.ingest.rules_for(station, now), now.timestamp()):
                cmd = StationCommand(station_id=station, at=now)
                await self.commands.send(key=station.encode(), value=encode(cmd))
                sent += 1
        return sent


def silence_due(raw: dict[str, Any] | None, rs: RuleSet, now_ts: float) -> bool:
    """Cheap look at a stored state (no full parse): might a silence rule open now?"""
    last = raw.get("lo") if raw else None
    if raw is None or last is None:
        return False
    arrival = raw.get("la")
    if arrival is None:
        arrival = last
    episodes = raw.get("e", {})
    return any(
        r.id not in episodes and now_ts - last >= r.after_s and now_ts - arrival >= r.arrival_s
        for r in rs.silent
    )


def too_late(reading: Reading, newest: float | None, grace: float) -> str:
    seen = (
        ""
        if newest is None
        else f" (the station's newest reading: {datetime.fromtimestamp(newest, UTC).isoformat()})"
    )
    return (
        f"reading observed at {reading.observed_at.isoformat()} arrived after its hour's late grace "
        f"of {grace:.0f} s{seen}; not folded into any average"
    )
