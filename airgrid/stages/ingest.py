"""Ingest and detect: validate each reading, fold it into the station's state, emit alarms.

One agent reads ``readings`` and ``station-commands`` (both keyed and partitioned by station, so
the same worker owns a station's readings, its commands and its table row). Malformed readings go to
``readings.dlq`` with the reason and origin, and so do readings later than the late grace
(``too_late``): the station's state is untouched by either. A timer looks for silent stations; as a
timer may not write a table, it sends a ``check_silence`` command that this agent applies.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import orjson

from airgrid.domain.detection import engine
from airgrid.domain.detection.compiled import RuleBook, RuleSet
from airgrid.domain.detection.state import StationState
from airgrid.domain.intake import Rejection, parse_reading
from airgrid.models.alarms import AlarmEvent
from airgrid.models.codecs import dead_letter, encode, first_line
from airgrid.models.readings import Reading, StationCommand
from airgrid.patches.durable import send_now
from airgrid.stages.warnings import station_level
from airgrid.worker.app import AirgridApp, Runtime
from airgrid.worker.retry import Retrier

log = logging.getLogger(__name__)


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


def register(app: AirgridApp, rt: Runtime) -> None:
    s = rt.settings
    stations = app.Table("stations", default=None, partitions=s.topic_partitions, key_type=str)
    rt.tables["stations"] = stations
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    rt.topics["station_commands"] = commands = app.topic(
        rt.names.station_commands, partitions=s.topic_partitions, **raw
    )
    channel = app.topic(rt.names.readings, rt.names.station_commands, partitions=s.topic_partitions, **raw)
    dlq, alarms = rt.topics["readings_dlq"], rt.topics["alarms"]
    m = rt.metrics
    directory = rt.directory
    limits = rt.limits
    book = RuleBook(rt.rules, grace_s=s.late_grace_seconds, aqi_standard=s.aqi_standard)
    rt.tables["rulebook"] = book

    def rules_now(now: datetime, station: str) -> RuleSet:
        return book.for_level(station_level(rt, station, now))

    async def to_dlq(event: Any, code: str, reason: str, now: datetime) -> None:
        msg = event.message
        letter = dead_letter(
            reason=reason,
            code=code,
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            key=event.key,
            value=event.value,
            at=now,
        )
        await dlq.send(key=event.key, value=encode(letter))
        m.dlq.labels("readings", code).inc()
        log.warning("reading %s/%s@%s to DLQ (%s): %s", msg.topic, msg.partition, msg.offset, code, reason)

    async def publish(station: str, events: list[AlarmEvent], now: datetime) -> None:
        """Send the alarms and wait until Kafka has them. Only then is the station's state written:
        a crash in between replays the reading against the old state and re-sends the same event
        ids (a duplicate subscribers drop), where the other order could lose an alarm for good."""
        if not events:
            return
        key = station.encode()
        acks = []
        for alarm in events:
            acks.append(await alarms.send(key=key, value=encode(alarm)))
            m.alarms.labels(alarm.kind, alarm.rule_id, alarm.pollutant or "", alarm.severity).inc()
            m.detection_latency.observe(max(0.0, (rt.clock() - now).total_seconds()))
        send_now(app.producer)  # no linger: the state is written only after these acks
        await asyncio.gather(*acks)

    async def on_reading(event: Any, now: datetime) -> None:
        result = parse_reading(event.value, now, limits, directory.stations.__contains__)
        if isinstance(result, Rejection):
            await to_dlq(event, result.code, result.reason, now)
            m.readings.labels("rejected").inc()
            return
        station = result.station_id
        state = StationState.from_json(stations.get(station))
        msg = event.message
        if state.replays(msg.partition, msg.offset):
            # delivered again after a restart or a rebalance: already in the state, its alarms sent
            m.readings.labels("replayed").inc()
            return
        newest = state.last_obs
        state, events, outcome = engine.evaluate(state, result, rules_now(now, station), now.timestamp())
        if outcome == "late":
            await to_dlq(event, "too_late", _too_late(result, newest, s.late_grace_seconds), now)
        await publish(station, events, now)
        if outcome not in ("late", "duplicate"):  # those leave the state as it was
            state.source = [msg.partition, msg.offset]
            stations[station] = state.to_json()
        m.readings.labels(outcome).inc()

    async def on_command(event: Any, now: datetime) -> None:
        try:
            cmd = StationCommand.model_validate(orjson.loads(event.value or b""))
        except ValueError as exc:  # JSON or validation: only airgrid writes this topic
            msg = event.message
            letter = dead_letter(
                reason=f"unreadable station command: {first_line(exc)}",
                code="unreadable",
                topic=msg.topic,
                partition=msg.partition,
                offset=msg.offset,
                key=event.key,
                value=event.value,
                at=now,
            )
            await rt.topics["commands_dlq"].send(key=event.key, value=encode(letter))
            m.dlq.labels("commands", "unreadable").inc()
            log.error("station command %s@%s dead-lettered: %s", msg.topic, msg.offset, letter.reason)
            return
        current = stations.get(cmd.station_id)
        if current is None:
            return
        state = StationState.from_json(current)
        events = engine.check_silence(state, cmd.station_id, rules_now(now, cmd.station_id), now.timestamp())
        if events:
            await publish(cmd.station_id, events, now)
            stations[cmd.station_id] = state.to_json()

    retrier = Retrier(app, m, give_up_s=s.internal_retry_seconds)

    async def ingest(stream: Any) -> None:
        async for event in stream.events():
            handle = on_command if event.message.topic == rt.names.station_commands else on_reading
            # a reading that is itself invalid goes to the DLQ inside the handler; anything else
            # that fails is retried, never dead-lettered (worker/retry.py)
            await retrier.run("ingest", event, lambda: handle(event, rt.clock()))  # noqa: B023

    app.agent(channel, name="airgrid.ingest", concurrency=1)(ingest)

    silence_s = book.min_silence_s
    if silence_s is not None:
        # Look often enough to fire within ~10 % of the threshold, never more than once a second.
        @app.timer(min(60.0, max(1.0, silence_s / 10)))  # type: ignore[misc]
        async def silence_sweep() -> None:
            try:
                await sweep_silence(rt, stations, commands, rules_now)
            except Exception:  # the next tick looks again
                m.internal_errors.labels("silence").inc()
                log.exception("silence sweep failed")


async def sweep_silence(rt: Runtime, stations: Any, commands: Any, rules_now: Any) -> int:
    """Send ``check_silence`` for every locally owned station that looks silent; return how many."""
    now = rt.clock()
    sent = 0
    for station, raw in list(stations.items()):
        if silence_due(raw, rules_now(now, station), now.timestamp()):
            cmd = StationCommand(station_id=station, at=now)
            await commands.send(key=station.encode(), value=encode(cmd))
            sent += 1
    return sent


def _too_late(reading: Reading, newest: float | None, grace: int) -> str:
    seen = (
        ""
        if newest is None
        else f" (the station's newest reading: {datetime.fromtimestamp(newest, UTC).isoformat()})"
    )
    return (
        f"reading observed at {reading.observed_at.isoformat()} arrived after its hour's late grace "
        f"of {grace} s{seen}; not folded into any average"
    )
