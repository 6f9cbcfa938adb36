"""``airgrid replay``: a topic range into the SQL projection."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import datetime
from typing import Any

import click

from airgrid.cli.base import UNREACHABLE, OpsError, command
from airgrid.cli.common import describe, first_line, parse_time, projection_engine, run_async
from airgrid.config.settings import Settings

# what the projection sink reads (sinks.sql.sink.ProjectionSink.topics)
TOPICS = (
    "task-events",
    "alarms",
    "feedback",
    "feedback.rejected",
    "readings.dlq",
    "alarms.dlq",
    "commands.dlq",
)


@command("replay")
@click.option(
    "--topic", required=True, type=click.Choice(TOPICS), help="topic to replay (without the prefix)"
)
@click.option(
    "--from-offset",
    type=click.IntRange(min=0),
    default=None,
    help="start at this offset in every partition (default 0)",
)
@click.option("--from-time", help="start at the first message at or after this ISO time")
@click.option(
    "--batch", type=click.IntRange(min=1), default=1000, show_default=True, help="events per SQL transaction"
)
def replay(topic: str, from_offset: int | None, from_time: str | None, batch: int) -> int:
    """Read a topic range and write it into the SQL projection. Writes are idempotent: replaying
    what is already projected changes no row. Stops at the end of the topic as it was when the
    replay started. --from-offset and --from-time exclude each other."""
    if from_offset is not None and from_time is not None:
        raise click.UsageError("--from-offset and --from-time exclude each other")

    async def go(s: Settings) -> int:
        from airgrid.cli.broker import reach
        from airgrid.sinks.sql import SqlProjection

        since = parse_time(from_time, s, "--from-time") if from_time else None
        await reach(s)
        engine = projection_engine(s, must_exist=False)
        sink = SqlProjection(engine, zone=s.zone)
        try:
            sink.setup()
        except Exception as exc:
            raise OpsError(
                f"cannot migrate the projection database: {first_line(exc)}", UNREACHABLE
            ) from None
        try:
            read, new = await _replay(s, sink, topic, from_offset or 0, since, batch)
        except OpsError:
            raise
        except Exception as exc:
            raise OpsError(f"replay failed: {describe(exc)}", UNREACHABLE) from None
        print(f"replayed {read} message(s) of {s.topic(topic)}: {new} new row(s)")
        return 0

    return run_async(go)


async def _replay(
    s: Any, sink: Any, topic: str, offset: int, since: datetime | None, size: int
) -> tuple[int, int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from airgrid.kafka.client import kafka_client_options, partitions_of
    from airgrid.kafka.topics import TopicNames
    from airgrid.metrics import Metrics
    from airgrid.sinks.base import SinkRunner
    from airgrid.sinks.sql.sink import ProjectionSink

    # the worker's projection sink, driven by the same runner (a failed write is retried)
    runner = SinkRunner(ProjectionSink(sink, TopicNames.of(s)), s, Metrics(), attempts=3)
    name = s.topic(topic)
    consumer = AIOKafkaConsumer(enable_auto_commit=False, request_timeout_ms=15000, **kafka_client_options(s))
    try:
        await asyncio.wait_for(consumer.start(), 20)
    except Exception as exc:
        raise OpsError(
            f"cannot reach Kafka at {s.broker}: {type(exc).__name__}: {exc}", UNREACHABLE
        ) from None
    read = new = 0
    try:
        parts = (await partitions_of(consumer, [name]))[name]
        if not parts:
            raise OpsError(f"topic {name} does not exist on {s.broker}")
        tps = [TopicPartition(name, p) for p in parts]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        if since is not None:
            found = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in tps})
            starts = {tp: (found[tp].offset if found[tp] else ends[tp]) for tp in tps}
        else:
            begins = await consumer.beginning_offsets(tps)
            starts = {tp: max(offset, begins[tp]) for tp in tps}
        for tp in tps:
            consumer.seek(tp, starts[tp])
        total = sum(max(0, ends[tp] - starts[tp]) for tp in tps)
        pending = {tp for tp in tps if starts[tp] < ends[tp]}
        shown = time.monotonic()
        while pending:
            got = await consumer.getmany(*pending, timeout_ms=1000, max_records=size)
            events = []
            for tp, msgs in got.items():
                for m in msgs:
                    if m.offset < ends[tp]:
                        events.append(m)
                    if m.offset + 1 >= ends[tp]:
                        pending.discard(tp)
            if events:
                written = await runner.write(events)
                new += written.rows if written is not None else 0
                read += len(events)
            if time.monotonic() - shown > 1 and sys.stderr.isatty():
                print(f"\rreplay {name}: {read}/{total}", end="", file=sys.stderr)
                shown = time.monotonic()
    finally:
        await consumer.stop()
    return read, new
