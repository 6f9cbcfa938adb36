"""Ingest and detect: validate each reading, fold it into the station's state, emit alarms.

One stream carries ``readings`` and ``station-commands`` (both keyed and partitioned by station,
so the same worker owns a station's readings, its commands and its table row). Malformed readings
go to ``readings.dlq`` with the reason and origin, and so do readings later than the late grace
(``too_late``) and readings under a key other than their station id (``wrong_key``: they are on a
partition that does not own the station): the station's state is untouched by any of them. The
silence sweep looks for silent stations on a timer; as a timer may not write a table, it sends a
``check_silence`` command that this stage applies.

Checkpointed state (issue 20): the stations' states live in memory between checkpoints (parsed
once, not per reading); a reading updates its station's state and sends its alarms without waiting.
At each checkpoint (``due``: ``checkpoint_max`` messages, ``cache_max / 2`` changed stations,
or ``checkpoint_s`` since the first unsaved one; ``idle``: nothing arrived for ``idle_s``) the
stage waits until Kafka has every alarm sent since the last one, and only then writes one table
row per changed station. ``lock`` keeps a
checkpoint and the handling of a message apart (a timer checkpoints an idle stream). The driver defers the
commit of every reading until the checkpoint after it is written. A kill between checkpoints
replays the readings since the last commit against the last checkpointed state and re-sends the
same alarm events (same ids: a duplicate subscribers drop), so nothing is lost; the other order
(state before alarms) could lose an alarm for good.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson

from airgrid.domain.detection import engine
from airgrid.domain.detection.compiled import RuleBook, RuleSet
from airgrid.domain.detection.state import StationState
from airgrid.domain.detection.warnings import StationWarnings
from airgrid.domain.directory import Directory
from airgrid.domain.intake import Limits, Rejection, parse_reading
from airgrid.domain.regional import alarm_hour
from airgrid.metrics import Metrics
from airgrid.models.alarms import AlarmEvent
from airgrid.models.codecs import encode, first_line
from airgrid.models.readings import Reading, StationCommand
from airgrid.models.regions import RegionAlarm, StationHour
from airgrid.stages.ports import Clock, Delivery, Outlet, Table, refuse

log = logging.getLogger(__name__)
T = TypeVar("T")


RETRY_S = 1.0  # after a failed checkpoint


class StateLost(RuntimeError):
    """Detection failed half-way through a station's state: the in-memory state (with readings not
    yet checkpointed) cannot be trusted, and only a restart from the last checkpoint restores it.
    The driver stops the worker with the reading uncommitted (a bug, not the reading's fault)."""


class Ingest:
    """Handles one message of ``readings`` or ``station-commands``; ``checkpoint`` saves."""

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
        current_event: Callable[[], Any] = lambda: None,
        writing_as: Callable[[Any], AbstractContextManager[None]] = lambda event: nullcontext(),
        checkpoint_s: float = 5.0,
        checkpoint_max: int = 50_000,
        cache_max: int = 100_000,
        idle_s: float = 0.05,
        region_of: Callable[[str], str | None] | None = None,
        region_inputs: Outlet | None = None,
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
        self.current_event = current_event  # the stream event being processed (opaque)
        self.writing_as = writing_as  # table writes on behalf of that event (its partition)
        self.checkpoint_s = checkpoint_s
        self.checkpoint_max = checkpoint_max
        self.cache_max = cache_max
        self.cache: dict[str, StationState] = {}  # station -> its state, newest last (LRU order)
        self.dirty: dict[str, Any] = {}  # station -> the event of its last change (unsaved)
        # the regional logic is on: closed hours and opened grid alarms also go to the station's
        # region (``region-inputs``), which decides their dispatch
        self.region_of = region_of if region_inputs is not None else None
        self.region_inputs = region_inputs
        # alarms (and region inputs) decided, not yet handed to Kafka: (outlet, key, value)
        self.outbox: list[tuple[Outlet, bytes, bytes]] = []
        self.sent: list[tuple[Awaitable[Any], Outlet, bytes, bytes]] = []  # handed over, ack awaited
        self.idle_s = idle_s
        self.unsaved = 0  # messages handled since the checkpoint
        metrics.ingest_unsaved.set_function(lambda: self.unsaved)  # read at a scrape, not per message
        self.first_unsaved_at = 0.0
        self.last_handled_at = 0.0
        self.generation: Any = None  # the consumer generation the states in memory belong to
        self.retry_at = 0.0  # after a failed checkpoint, the next waits until then
        self.lock = asyncio.Lock()  # a checkpoint never interleaves with a message's handling

    def rules_for(self, station: str, now: datetime) -> RuleSet:
        """The rule profile of the warning level in force over the station."""
        return self.rulebook.for_level(self.warnings.level(station, now))

    async def handle(self, msg: Delivery) -> None:
        """Apply one message to its station's state in memory and send its alarms. A message that
        is itself invalid goes to its DLQ; a failure to send raises and the retry sends what is
        still pending (the state already holds the reading: a retry finds it a replay)."""
        self.last_handled_at = asyncio.get_running_loop().time()
        if not self.unsaved:
            self.first_unsaved_at = self.last_handled_at
        self.unsaved += 1
        now = self.clock()
        if msg.topic == self.commands_topic:
            await self.on_command(msg, now)
        else:
            await self.on_reading(msg, now)
        await self.send_outbox()

    async def on_reading(self, msg: Delivery, now: datetime) -> None:
        result = parse_reading(msg.value, now, self.limits, self.known)
        if isinstance(result, Rejection):
            await self.to_dlq(msg, result.code, result.reason, now)
            self.m.readings.labels("rejected").inc()
            return
        station = result.station_id
        if msg.key != station.encode():
            # the station's partition holds its state: a reading under another key (or none)
            # lands on a partition that does not own the station, and its state written there
            # would be a second copy, of another writer, that a recovery may restore instead
            await self.to_dlq(msg, "wrong_key", wrong_key(msg.key, station), now)
            self.m.readings.labels("rejected").inc()
            return
        state = self.state(station)
        if state.replays(msg.partition, msg.offset):
            # delivered again (a restart, a rebalance, a retry): in the state already
            self.m.readings.labels("replayed").inc()
            return
        newest = state.last_obs
        rules = self.rules_for(station, now)
        closed: list[tuple[int, dict[str, float]]] | None = [] if self.region_of is not None else None
        state, events, outcome = self.evaluate(
            station, lambda: engine.evaluate(state, result, rules, now.timestamp(), closed)
        )
        if closed:
            self.to_region(station, closed)
        if outcome == "late":
            await self.to_dlq(msg, "too_late", too_late(result, newest, rules.grace_s), now)
        if outcome not in ("late", "duplicate"):  # those leave the state as it was
            state.source = [msg.partition, msg.offset]
            self.changed(station, state)
        self.queue(station, events, now)
        self.m.readings.labels(outcome).inc()

    async def on_command(self, msg: Delivery, now: datetime) -> None:
        try:
            cmd = StationCommand.model_validate(orjson.loads(msg.value or b""))
        except ValueError as exc:  # JSON or validation: only airgrid writes this topic
            reason = f"unreadable station command: {first_line(exc)}"
            await refuse(self.commands_dlq, msg, "unreadable", reason, now)
            self.m.dlq.labels("commands", "unreadable").inc()
            return
        station = cmd.station_id
        if station not in self.cache and self.stations.get(station) is None:
            return
        state = self.state(station)
        rules = self.rules_for(station, now)
        events = self.evaluate(station, lambda: engine.check_silence(state, station, rules, now.timestamp()))
        if events:
            self.changed(station, state)
            self.queue(station, events, now)

    def evaluate(self, station: str, step: Callable[[], T]) -> T:
        """Run a detection step on the station's cached state; if it fails half-way, the state
        is dropped and StateLost raised (see the class)."""
        try:
            return step()
        except Exception as exc:
            self.forget()
            raise StateLost(f"detection failed on station {station}: {type(exc).__name__}: {exc}") from exc

    def to_region(self, station: str, closed: list[tuple[int, dict[str, float]]]) -> None:
        """The station's newly closed hours, to its region (the regional background)."""
        region = self.region_of(station) if self.region_of is not None else None
        if region is None or self.region_inputs is None:
            return
        for hour, values in closed:
            record = StationHour.model_construct(region=region, station_id=station, hour=hour, values=values)  # type: ignore[arg-type]
            self.outbox.append((self.region_inputs, region.encode(), encode(record)))

    def queue(self, station: str, events: list[AlarmEvent], now: datetime) -> None:
        key = station.encode()
        region = self.region_of(station) if self.region_of is not None else None
        for alarm in events:
            self.outbox.append((self.alarms, key, encode(alarm)))
            if (
                region is not None
                and self.region_inputs is not None
                and alarm.kind == "opened"
                and alarm.route == "grid"
            ):
                forward = RegionAlarm(region=region, hour=alarm_hour(alarm), alarm=alarm)
                self.outbox.append((self.region_inputs, region.encode(), encode(forward)))
            self.m.alarms.labels(alarm.kind, alarm.rule_id, alarm.pollutant or "", alarm.severity).inc()
            self.m.detection_latency.observe(max(0.0, (self.clock() - now).total_seconds()))

    async def send_outbox(self) -> None:
        """Hand every pending alarm to Kafka, in order; the checkpoint waits for their acks."""
        if not self.outbox:
            return
        while self.outbox:
            outlet, key, value = self.outbox[0]
            self.sent.append((await outlet.send(key=key, value=value), outlet, key, value))
            self.outbox.pop(0)
        self.release()  # subscribers see an alarm at once; a linger is for the state records

    async def to_dlq(self, msg: Delivery, code: str, reason: str, now: datetime) -> None:
        await refuse(self.readings_dlq, msg, code, reason, now)
        self.m.dlq.labels("readings", code).inc()

    # --- the states between checkpoints ----------------------------------------------------------

    def state(self, station: str) -> StationState:
        """The station's current state: the cached one, or its table row read once."""
        state = self.cache.pop(station, None)
        if state is None:
            state = StationState.from_json(self.stations.get(station))
        self.cache[station] = state  # newest last
        return state

    def changed(self, station: str, state: StationState) -> None:
        """``state`` is the station's new state, to be written at the next checkpoint."""
        self.cache[station] = state
        self.dirty[station] = self.current_event()

    def due(self, now: float) -> bool:
        """Time for a checkpoint while messages flow: ``checkpoint_max`` of them since the last
        one, or the first of them waited ``checkpoint_s`` (``now``: the event loop's clock), or
        as many stations changed as the cache may hold (a changed state cannot leave it before it
        is written: this keeps the cache, and the memory, within ``cache_max``)."""
        return (
            self.unsaved > 0
            and now >= self.retry_at
            and (
                self.unsaved >= self.checkpoint_max
                or 2 * len(self.dirty) >= self.cache_max
                or now - self.first_unsaved_at >= self.checkpoint_s
            )
        )

    def idle(self, now: float) -> bool:
        """Time for a checkpoint because the input ran dry: nothing arrived for ``idle_s``."""
        return self.unsaved > 0 and now >= self.retry_at and now - self.last_handled_at >= self.idle_s

    def failed(self, now: float) -> None:
        """A checkpoint failed at ``now``: the next is tried ``RETRY_S`` later, not at each message."""
        self.retry_at = now + RETRY_S

    async def checkpoint(self, writable: Callable[[], bool] = lambda: True) -> int | None:
        """Wait until Kafka has every alarm sent since the last checkpoint, then write one row per
        changed station (each to its own partition); how many rows. An alarm Kafka refused goes
        back to the outbox and the checkpoint fails: the states stay unsaved for the next one.
        ``writable()`` is asked again after that wait, right before the rows (nothing awaits in
        between): a rebalance may have come meanwhile, and a row of a revoked partition written
        now could overwrite a state another worker owns, ahead of its committed offsets. None
        then: nothing written, nothing may be marked saved."""
        await self.send_outbox()
        if self.sent:
            sent, self.sent = self.sent, []
            results = await asyncio.gather(*(ack for ack, _, _, _ in sent), return_exceptions=True)
            failed = [
                (outlet, key, value)
                for (_, outlet, key, value), r in zip(sent, results, strict=True)
                if isinstance(r, BaseException)
            ]
            if failed:
                self.outbox[:0] = failed
                raise ConnectionError(f"{len(failed)} alarm(s) not acknowledged by Kafka; sent again")
        if not writable():
            return None
        written = 0
        for station in list(self.dirty):  # a failed write leaves it, and the rest, for the next one
            with self.writing_as(self.dirty[station]):
                self.stations[station] = self.cache[station].to_json()
            del self.dirty[station]
            written += 1
        self.unsaved = 0
        self.release()
        self.m.ingest_checkpoint.observe(written)
        self.trim()
        return written

    def adopt(self, generation: Any) -> bool:
        """The states in memory are of consumer generation ``generation``; if they were of another
        one (a rebalance since), they are dropped first. True when they were dropped."""
        if generation == self.generation:
            return False
        self.forget()
        self.generation = generation
        return True

    def current(self, generation: Any) -> bool:
        """The states in memory belong to ``generation`` (the consumer's current one): only then
        may a checkpoint write them. Otherwise they are dropped: their partitions were revoked,
        and a row written now could overwrite the state another worker owns."""
        if generation == self.generation:
            return True
        self.forget()
        return False

    def trim(self) -> None:
        """Keep at most ``cache_max`` states (clean ones go, oldest first)."""
        excess = len(self.cache) - self.cache_max
        if excess > 0:
            for station in [s for s in self.cache if s not in self.dirty][:excess]:
                del self.cache[station]

    def forget(self) -> None:
        """Drop every state and everything unsaved (the partitions moved, or a state is lost):
        the readings since the last checkpoint are read again from the committed offsets."""
        self.cache.clear()
        self.dirty.clear()
        self.outbox.clear()
        for ack, _, _, _ in self.sent:  # nobody awaits them now: a refusal is not an unread error
            if isinstance(ack, asyncio.Future):
                ack.add_done_callback(_retrieved)
        self.sent.clear()
        self.unsaved = 0
        self.generation = None


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


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
        # the table holds the states as of the last checkpoint: at most a checkpoint behind
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


def wrong_key(key: bytes | None, station: str) -> str:
    got = "no key" if key is None else f"key {key[:80].decode('utf-8', errors='replace')!r}"
    return (
        f"reading of station {station} under {got}: readings are keyed by their station id, "
        "so that one partition holds a station's readings and its state"
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
