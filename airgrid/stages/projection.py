"""The projection stage: batches of alarms, task events, feedback and dead letters written to SQL
off the event loop.

It reads with its own Kafka consumer in its own group (``<app id>-projection``), not as a Faust
agent: a slow or unavailable database then only delays the projection, and can never hold up a
rebalance of the processing group (Faust waits for every agent's unacknowledged events before it
lets a rebalance finish; a projection batch waiting for the database stalled the whole worker).
Offsets are committed only after a batch is written, so nothing unwritten is ever committed; a
failing write is retried with capped exponential backoff. The schema is migrated (Alembic
``upgrade head``) before the first write. Writes are idempotent, so a batch read twice (after a
crash or a rebalance of the projection group) changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from airgrid.kafka.topics import kafka_client_options
from airgrid.models.alarms import AlarmEvent
from airgrid.models.dlq import DeadLetter
from airgrid.models.feedback import Feedback, FeedbackRejected
from airgrid.models.tasks import TaskEvent
from airgrid.sinks.sql import Batch, Letter, SqlProjection, make_engine
from airgrid.worker.app import AirgridApp, Runtime

log = logging.getLogger(__name__)
MAX_BACKOFF = 30.0


def register(app: AirgridApp, rt: Runtime) -> None:
    s = rt.settings
    s.data_dir.mkdir(parents=True, exist_ok=True)
    sink = SqlProjection(
        make_engine(s.sqlalchemy_url, statement_timeout=s.projection_statement_timeout_seconds), zone=s.zone
    )
    rt.tables["projection"] = sink  # not a Faust table: exposed for the web health view
    n = rt.names
    topics = (
        n.task_events,
        n.alarms,
        n.feedback,
        n.feedback_rejected,
        n.readings_dlq,
        n.alarms_dlq,
        n.commands_dlq,
    )
    m = rt.metrics

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

    async def write(batch: Batch) -> bool:
        started = time.perf_counter()
        if not await retrying("write", sink.write_batch, batch):
            return False
        m.projection_seconds.observe(time.perf_counter() - started)
        m.projection_rows.labels("alarm").inc(len(batch.alarms))
        m.projection_rows.labels("task_event").inc(len(batch.task_events))
        m.projection_rows.labels("feedback").inc(len(batch.feedback))
        m.projection_rows.labels("dead_letter").inc(len(batch.letters))
        return True

    @app.task  # type: ignore[untyped-decorator]
    async def project() -> None:
        if not await retrying("migration", sink.setup):
            return
        consumer = AIOKafkaConsumer(
            *topics,
            group_id=f"{s.app_id}-projection",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=5000,  # topics the worker is creating right now show up soon
            session_timeout_ms=int(s.session_timeout_seconds * 1000),
            heartbeat_interval_ms=int(min(3.0, s.session_timeout_seconds / 3) * 1000),
            **kafka_client_options(s),
        )
        await consumer.start()
        within_ms = int(s.projection_within_seconds * 1000)
        try:
            while not app.should_stop:
                got = await fill(consumer, within_ms, s.projection_batch)
                records = [r for part in got.values() for r in part]
                if records:
                    if not await write(to_batch(records, rt)):
                        return  # stopping: nothing committed, the next worker reads them again
                    offsets = {tp: part[-1].offset + 1 for tp, part in got.items() if part}
                    try:
                        await consumer.commit(offsets)
                    except KafkaError as exc:  # a rebalance (CommitFailedError): re-read, idempotent
                        log.warning("projection commit failed (the batch will be read again): %s", exc)
                backlog = 0
                for tp in consumer.assignment():
                    high = consumer.highwater(tp)  # known once a fetch for tp has returned
                    if high is not None:
                        backlog += max(0, high - await consumer.position(tp))
                m.projection_lag.set(backlog)
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()


async def fill(consumer: AIOKafkaConsumer, within_ms: int, most: int) -> dict[Any, list[Any]]:
    """Records for one write: up to ``most``, read for at most ``within_ms`` after the first one
    arrives. A write costs a transaction and a commit (an fsync) whatever its size, and it runs in
    a thread that takes the GIL from the agents: a batch per fetch (a few rows each under a steady
    load) cost the event loop more than the whole ingest did."""
    got: dict[Any, list[Any]] = dict(await consumer.getmany(timeout_ms=within_ms, max_records=most))
    count = sum(map(len, got.values()))
    if not count:
        return got
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_ms / 1000
    while count < most and (left := deadline - loop.time()) > 0:
        more = await consumer.getmany(timeout_ms=max(1, int(left * 1000)), max_records=most - count)
        for tp, part in more.items():
            got.setdefault(tp, []).extend(part)
            count += len(part)
    return got


def to_batch(records: list[Any], rt: Runtime) -> Batch:
    """Sort Kafka records by topic into validated messages; unreadable ones are skipped loudly
    (the feedback topic carries foreign messages that feedback.rejected already counts)."""
    n = rt.names
    batch = Batch()
    for msg in records:
        try:
            data = orjson.loads(msg.value)
            if msg.topic == n.alarms:
                batch.alarms.append(AlarmEvent.model_validate(data))
            elif msg.topic == n.task_events:
                batch.task_events.append(TaskEvent.model_validate(data))
            elif msg.topic == n.feedback:
                batch.feedback.append(Feedback.model_validate(data))
            else:
                fallback = f"{msg.topic}:{msg.partition}:{msg.offset}"
                kind = {
                    n.readings_dlq: "readings.dlq",
                    n.alarms_dlq: "alarms.dlq",
                    n.commands_dlq: "commands.dlq",
                }.get(msg.topic)
                if kind is not None:
                    letter = Letter(kind, DeadLetter.model_validate(data), fallback)  # type: ignore[arg-type]
                else:
                    letter = Letter("feedback.rejected", FeedbackRejected.model_validate(data), fallback)
                batch.letters.append(letter)
        except Exception as exc:
            if msg.topic != n.feedback:
                rt.metrics.projection_errors.inc()
            log.warning("projection skips unreadable %s@%s: %s", msg.topic, msg.offset, exc)
    return batch
