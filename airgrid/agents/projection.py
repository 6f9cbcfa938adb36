"""The projection stage: batches of alarms and task events written to SQL off the event loop.

A batch is acknowledged only after it is written, so the consumer never commits past unwritten
events; a failing write is retried with capped exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson

from airgrid.models.alarms import AlarmEvent
from airgrid.models.tasks import TaskEvent
from airgrid.sinks.sql import SqlProjection, make_engine
from airgrid.streams.app import AirgridApp, Runtime

log = logging.getLogger(__name__)
MAX_BACKOFF = 30.0


def register(app: AirgridApp, rt: Runtime) -> None:
    s = rt.settings
    s.data_dir.mkdir(parents=True, exist_ok=True)
    sink = SqlProjection(make_engine(s.sqlalchemy_url))
    rt.tables["projection"] = sink  # not a Faust table: exposed for the web health view
    alarms_name = rt.names.alarms
    channel = app.topic(rt.names.task_events, alarms_name, key_serializer="raw", value_serializer="raw")
    m = rt.metrics

    @app.task  # type: ignore[untyped-decorator]
    async def create_schema() -> None:
        await asyncio.to_thread(sink.setup)

    async def write(alarm_batch: list[AlarmEvent], event_batch: list[TaskEvent]) -> None:
        backoff = 0.5
        while True:
            started = time.perf_counter()
            try:
                await asyncio.to_thread(sink.write, alarm_batch, event_batch)
            except Exception as exc:
                m.projection_errors.inc()
                log.error("projection write failed (retry in %.1fs): %s", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            m.projection_seconds.observe(time.perf_counter() - started)
            m.projection_rows.labels("alarm").inc(len(alarm_batch))
            m.projection_rows.labels("task_event").inc(len(event_batch))
            return

    async def project(stream: Any) -> None:
        async for batch in stream.take_events(s.projection_batch, within=s.projection_within_seconds):
            alarm_batch: list[AlarmEvent] = []
            event_batch: list[TaskEvent] = []
            for event in batch:
                try:
                    data = orjson.loads(event.value)
                    if event.message.topic == alarms_name:
                        alarm_batch.append(AlarmEvent.model_validate(data))
                    else:
                        event_batch.append(TaskEvent.model_validate(data))
                except Exception as exc:  # a foreign message on our output topics: skip, loudly
                    m.projection_errors.inc()
                    log.error(
                        "projection skips unreadable %s@%s: %s",
                        event.message.topic,
                        event.message.offset,
                        exc,
                    )
            await write(alarm_batch, event_batch)

    app.agent(channel, name="airgrid.projection", concurrency=1)(project)
