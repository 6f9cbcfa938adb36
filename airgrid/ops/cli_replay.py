"""``airgrid replay`` (a topic range into the projection) and ``airgrid db`` (migrations)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import datetime
from typing import Any

from airgrid.ops.common import (
    UNREACHABLE,
    OpsError,
    fail,
    first_line,
    parse_time,
    projection_engine,
    settings,
)

TOPICS = ("task-events", "alarms", "feedback", "feedback.rejected", "readings.dlq")


def cmd_replay(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="airgrid replay",
        description="Read a topic range and write it into the SQL projection. Writes are idempotent: "
        "replaying what is already projected changes no row. Stops at the end of the topic as it "
        "was when the replay started.",
    )
    p.add_argument("--topic", required=True, choices=TOPICS, help="topic to replay (without the prefix)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--from-offset", type=int, help="start at this offset in every partition (default 0)")
    start.add_argument("--from-time", help="start at the first message at or after this ISO time")
    p.add_argument("--batch", type=int, default=1000, help="events per SQL transaction (default 1000)")
    a = p.parse_args(argv)
    try:
        s = settings()
        since = parse_time(a.from_time, s, "--from-time") if a.from_time else None
        if a.from_offset is not None and a.from_offset < 0:
            raise OpsError("--from-offset must be 0 or more")
        engine = projection_engine(s, must_exist=False)
        from airgrid.sinks.sql import SqlProjection

        sink = SqlProjection(engine, zone=s.zone)
        try:
            sink.setup()
        except Exception as exc:
            raise OpsError(
                f"cannot migrate the projection database: {first_line(exc)}", UNREACHABLE
            ) from None
        read, new = asyncio.run(_replay(s, sink, a.topic, a.from_offset or 0, since, a.batch))
    except OpsError as exc:
        return fail(exc)
    except Exception as exc:
        return fail(OpsError(f"replay failed: {type(exc).__name__}: {first_line(exc)}", UNREACHABLE))
    print(f"replayed {read} message(s) of {s.topic(a.topic)}: {new} new row(s)")
    return 0


async def _replay(
    s: Any, sink: Any, topic: str, offset: int, since: datetime | None, size: int
) -> tuple[int, int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from airgrid.kafka.client import kafka_client_options
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
        # an unsubscribed consumer's cluster view is empty: ask the broker for the topic's partitions
        cluster = await consumer._client.fetch_all_metadata()
        parts = cluster.partitions_for_topic(name)
        if not parts:
            raise OpsError(f"topic {name} does not exist on {s.broker}")
        tps = [TopicPartition(name, p) for p in sorted(parts)]
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


def cmd_db(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="airgrid db", description="The projection database (Alembic).")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="upgrade|status")
    sub.add_parser("upgrade", help="migrate the projection database to the newest schema")
    sub.add_parser("status", help="schema revision and row counts")
    a = p.parse_args(argv)
    from airgrid.sinks.sql import SqlProjection, table_counts
    from airgrid.sinks.sql.migrate import current_revision, head_revision

    try:
        s = settings()
        engine = projection_engine(s, must_exist=a.cmd == "status")
        if a.cmd == "upgrade":
            s.data_dir.mkdir(parents=True, exist_ok=True)
            SqlProjection(engine, zone=s.zone).setup()
        rev, head = current_revision(engine), head_revision(engine)
        print(f"schema revision {rev} (head {head})")
        if a.cmd == "status" and rev is not None:
            for table, count in table_counts(engine).items():
                print(f"  {table:<14} {count}")
    except OpsError as exc:
        return fail(exc)
    return 0
