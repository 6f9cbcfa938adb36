"""Ingest and detect: validate each reading, fold it into the station's state, emit alarms.

Malformed readings go to ``readings.dlq`` with the reason and origin; the worker keeps going.
"""

from __future__ import annotations

import logging
from typing import Any

from airgrid.domain.detect import StationState, evaluate
from airgrid.domain.intake import Rejection, parse_reading
from airgrid.streams.app import AirgridApp, Runtime
from airgrid.streams.codecs import dead_letter, encode

log = logging.getLogger(__name__)


def register(app: AirgridApp, rt: Runtime) -> None:
    stations = app.Table(
        "stations",
        default=None,
        partitions=rt.settings.topic_partitions,
        key_type=str,
    )
    rt.tables["stations"] = stations
    readings, dlq, alarms = rt.topics["readings"], rt.topics["readings_dlq"], rt.topics["alarms"]
    m = rt.metrics
    directory = rt.directory
    limits = rt.limits

    async def handle(event: Any) -> None:
        msg = event.message
        now = rt.clock()
        result = parse_reading(event.value, now, limits, directory.stations.__contains__)
        if isinstance(result, Rejection):
            letter = dead_letter(
                reason=result.reason,
                code=result.code,
                topic=msg.topic,
                partition=msg.partition,
                offset=msg.offset,
                key=event.key,
                value=event.value,
                at=now,
            )
            await dlq.send(key=event.key, value=encode(letter))
            m.readings.labels("rejected").inc()
            m.dlq.labels("readings", result.code).inc()
            log.warning("reading %s/%s@%s to DLQ: %s", msg.topic, msg.partition, msg.offset, result.reason)
            return
        station = result.station_id
        key = station.encode()
        state = StationState.from_json(stations.get(station))
        state, events, outcome = evaluate(state, result, rt.rules, now)
        for alarm in events:
            await alarms.send(key=key, value=encode(alarm))
            m.alarms.labels(alarm.kind, alarm.rule_id, alarm.pollutant or "", alarm.severity).inc()
            m.detection_latency.observe(max(0.0, (rt.clock() - now).total_seconds()))
        stations[station] = state.to_json()
        m.readings.labels(outcome).inc()

    async def ingest(stream: Any) -> None:
        async for event in stream.events():
            try:
                await handle(event)
            except Exception as exc:  # an exception would ack the event: dead-letter it instead
                log.exception("reading at offset %s failed", event.message.offset)
                msg = event.message
                letter = dead_letter(
                    reason=f"internal error: {type(exc).__name__}: {exc}",
                    code="internal",
                    topic=msg.topic,
                    partition=msg.partition,
                    offset=msg.offset,
                    key=event.key,
                    value=event.value,
                    at=rt.clock(),
                )
                await dlq.send(key=event.key, value=encode(letter))
                m.readings.labels("failed").inc()
                m.dlq.labels("readings", "internal").inc()

    app.agent(readings, name="airgrid.ingest", concurrency=1)(ingest)
