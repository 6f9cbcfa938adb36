"""The owner's group commit on the real worker: a burst of alarms for stations on every partition
is made durable in few flushes, and every table row still lands in its own station's changelog
partition (a row written under another event's partition is what a recovering worker would miss)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from tests.e2e.escalation_support import DIRECTORY, alarm, hour_ago
from tests.helpers import Collector, Worker, _partitions, produce, worker_env

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.timeout(180)]


async def changelog(bootstrap: str, topic: str) -> tuple[list[int], list[tuple[int, str, dict | None]]]:
    """The partitions of a table's changelog topic, and (partition, key, value) of every record,
    in offset order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    rows: list[tuple[int, str, dict | None]] = []
    try:
        tps = [TopicPartition(topic, p) for p in sorted(await _partitions(consumer, topic, 5.0))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        left = [tp for tp in tps if ends[tp] > 0]
        while left:
            for tp, msgs in (await consumer.getmany(*tps, timeout_ms=500)).items():
                for msg in msgs:
                    value = None
                    with contextlib.suppress(orjson.JSONDecodeError):
                        value = orjson.loads(msg.value) if msg.value else None
                    rows.append((tp.partition, orjson.loads(msg.key), value))
            left = [tp for tp in left if await consumer.position(tp) < ends[tp]]
    finally:
        await consumer.stop()
    return [tp.partition for tp in tps], rows


async def test_a_burst_of_dispatches_is_grouped_and_each_row_stays_in_its_partition(
    kafka_bootstrap: str, uid: str, tmp_path: Path
) -> None:
    env = worker_env(kafka_bootstrap, uid, tmp_path / "state")
    prefix = env["AIRGRID_TOPIC_PREFIX"]
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    stations = sorted(DIRECTORY.stations)
    try:
        async with Collector(kafka_bootstrap, [prefix + "task-events"]) as seen:
            opened = hour_ago(5)
            await produce(
                kafka_bootstrap, prefix + "alarms", [(st.encode(), alarm(st, opened)) for st in stations]
            )
            deadline = asyncio.get_running_loop().time() + 60
            while len(seen.of(prefix + "task-events")) < len(stations):
                assert asyncio.get_running_loop().time() < deadline, worker.tail()
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # the settled rows (outbox cleared) follow the events
            flushes = worker.metric("airgrid_owner_batch_changes_count")
            grouped = worker.metric("airgrid_owner_batch_changes_sum")
    finally:
        worker.stop()

    events = seen.of(prefix + "task-events")
    assert sorted(e["station_id"] for e in events) == stations
    assert {e["type"] for e in events} == {"dispatched"}
    assert grouped == len(stations)
    assert flushes < len(stations) / 2, f"{flushes} flushes for {len(stations)} dispatches: nothing grouped"

    app_id = env["AIRGRID_APP_ID"]
    parts, tasks = await changelog(kafka_bootstrap, f"{app_id}-tasks-changelog")
    partitioner = DefaultPartitioner()

    def home(station: str) -> int:
        return int(partitioner(station.encode(), parts, parts))

    last: dict[str, dict | None] = {}
    for partition, task_id, value in tasks:
        assert value is not None
        station = value["station_id"]
        assert partition == home(station), f"task {task_id} of {station} written to partition {partition}"
        last[task_id] = value
    assert len(last) == len(stations)
    assert all(v is not None and v["outbox"] == [] for v in last.values())  # settled, in place
    _, pointers = await changelog(kafka_bootstrap, f"{app_id}-station-open-task-changelog")
    assert {st for _, st, _ in pointers} == set(stations)
    assert all(partition == home(st) for partition, st, _ in pointers)
