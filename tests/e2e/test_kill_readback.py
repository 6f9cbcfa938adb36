"""The read-back an owner does after a crash, on the real broker: the event ids at the tail of
the task-events partition a station's key goes to (murmur2, as the producer partitions)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from airgrid.config.settings import load_settings
from airgrid.kafka.readback import published_ids
from airgrid.kafka.topics import ensure_topics

pytestmark = [pytest.mark.kafka]


async def test_published_ids_reads_the_keys_partition_tail(
    kafka_bootstrap: str, uid: str, tmp_path: Path
) -> None:
    settings = load_settings(
        broker=f"kafka://{kafka_bootstrap}", topic_prefix=f"r{uid}.", data_dir=tmp_path, topic_partitions=4
    )
    await ensure_topics(settings)
    topic = settings.topic("task-events")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for station in ("ST001", "ST002", "ST003", "ST004", "ST005"):
            for v in (1, 2):
                value = orjson.dumps({"event_id": f"T-{station}-1:{v}"})
                await producer.send_and_wait(topic, key=station.encode(), value=value)
        await producer.send_and_wait(topic, key=b"ST001", value=b"not json")
    finally:
        await producer.stop()
    stations = ("ST001", "ST002", "ST003", "ST004", "ST005")
    part = DefaultPartitioner()
    home = part(b"ST001", [0, 1, 2, 3], [0, 1, 2, 3])
    sharing = {s for s in stations if part(s.encode(), [0, 1, 2, 3], [0, 1, 2, 3]) == home}
    expected = {f"T-{s}-1:{v}" for s in sharing for v in (1, 2)}
    assert await published_ids(settings, topic, b"ST001") == expected
