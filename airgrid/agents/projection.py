"""The projection stage: batches of alarms, task events, feedback and dead letters written to SQL
off the event loop.

A batch is acknowledged only after it is written, so the consumer never commits past unwritten
events; a failing write is retried with capped exponential backoff. The schema is migrated
(Alembic ``upgrade head``) before the first write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson

from airgrid.models.alarms import AlarmEvent
from airgrid.models.dlq import DeadLetter
from airgrid.models.feedback import Feedback, FeedbackRejected
from airgrid.models.tasks import TaskEvent
from airgrid.sinks.sql import Batch, Letter, SqlProjection, make_engine
from airgrid.streams.app import AirgridApp, Runtime

log = logging.getLogger(__name__)
MAX_BACKOFF = 30.0


def register(app: AirgridApp, rt: Runtime) -> None:
    s = rt.settings
    s.data_dir.mkdir(parents=True, exist_ok=True)
    sink = SqlProjection(make_engine(s.sqlalchemy_url), zone=s.zone)
    rt.tables["projection"] = sink  # not a Faust table: exposed for the web health view
    n = rt.names
    channel = app.topic(
        n.task_events,
        n.alarms,
        n.feedback,
        n.feedback_rejected,
        n.readings_dlq,
        key_serializer="raw",
        value_serializer="raw",
    )
    m = rt.metrics
    migrated: dict[str, asyncio.Event] = {}

    def ready() -> asyncio.Event:
        return migrated.setdefault("ready", asyncio.Event())

    async def pause(seconds: float) -> bool:
        """Sleep, but give up (False) as soon as the worker is stopping."""
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            if app.should_stop:
                return False
            await asyncio.sleep(min(0.2, until - time.monotonic()))
        return not app.should_stop

    async def retrying(what: str, fn: Any, *args: Any) -> bool:
        """Run ``fn`` in a thread until it succeeds (True), or the worker stops (False)."""
        backoff = 0.5
        while True:
            try:
                await asyncio.to_thread(fn, *args)
                return True
            except Exception as exc:
                m.projection_errors.inc()
                log.error("projection %s failed (retry in %.1fs): %s", what, backoff, exc)
                if not await pause(backoff):
                    return False
                backoff = min(backoff * 2, MAX_BACKOFF)

    @app.task  # type: ignore[untyped-decorator]
    async def migrate_schema() -> None:
        if await retrying("migration", sink.setup):
            ready().set()

    async def write(batch: Batch) -> bool:
        while not ready().is_set():
            if not await pause(0.2):
                return False
        started = time.perf_counter()
        if not await retrying("write", sink.write_batch, batch):
            return False
        m.projection_seconds.observe(time.perf_counter() - started)
        m.projection_rows.labels("alarm").inc(len(batch.alarms))
        m.projection_rows.labels("task_event").inc(len(batch.task_events))
        m.projection_rows.labels("feedback").inc(len(batch.feedback))
        m.projection_rows.labels("dead_letter").inc(len(batch.letters))
        return True

    async def project(stream: Any) -> None:
        async for events in stream.take_events(s.projection_batch, within=s.projection_within_seconds):
            batch = to_batch(events, rt)
            written = False
            try:
                written = await write(batch)
            finally:
                if not written:
                    settle_unwritten(events)
            if not written:
                log.warning("worker stopping: %d unwritten events left for the next worker", len(events))
                topics = set(channel.topics)
                while True:  # until Faust cancels this agent: settle what the stream still holds
                    settle_unwritten(
                        [
                            _Held(m)
                            for m in list(getattr(app.consumer, "_unacked_messages", ()))
                            if m.topic in topics
                        ]
                    )
                    await asyncio.sleep(0.2)

    app.agent(channel, name="airgrid.projection", concurrency=1)(project)


def settle_unwritten(events: list[Any]) -> None:
    """The worker stops before these events were written. take_events acks its batch when the
    generator closes, and the consumer waits on unacked messages before it stops; marking the
    messages settled without acking them satisfies both, and as their offsets never reach the
    consumer's acked set they are never committed: the next worker reads them again."""
    for event in events:
        event.message.acked = True


class _Held:
    """A message the consumer delivered to this agent's stream that was never written."""

    def __init__(self, message: Any) -> None:
        self.message = message


def to_batch(events: list[Any], rt: Runtime) -> Batch:
    """Sort a take_events batch by topic into validated messages; unreadable ones are skipped
    loudly (the feedback topic carries foreign messages that feedback.rejected already counts)."""
    n = rt.names
    batch = Batch()
    for event in events:
        msg = event.message
        try:
            data = orjson.loads(event.value)
            if msg.topic == n.alarms:
                batch.alarms.append(AlarmEvent.model_validate(data))
            elif msg.topic == n.task_events:
                batch.task_events.append(TaskEvent.model_validate(data))
            elif msg.topic == n.feedback:
                batch.feedback.append(Feedback.model_validate(data))
            else:
                fallback = f"{msg.topic}:{msg.partition}:{msg.offset}"
                if msg.topic == n.readings_dlq:
                    letter = Letter("readings.dlq", DeadLetter.model_validate(data), fallback)
                else:
                    letter = Letter("feedback.rejected", FeedbackRejected.model_validate(data), fallback)
                batch.letters.append(letter)
        except Exception as exc:
            if msg.topic != n.feedback:
                rt.metrics.projection_errors.inc()
            log.warning("projection skips unreadable %s@%s: %s", msg.topic, msg.offset, exc)
    return batch
