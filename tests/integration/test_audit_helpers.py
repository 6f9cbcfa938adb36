"""The auditor's own instruments against the real broker: a fresh read of topics to their end and
a consumer group's committed offsets. A reliability test that fails leans on both for its verdict."""

from __future__ import annotations

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.helpers import consumer_lag, produce, read_topics

pytestmark = [pytest.mark.kafka]


async def test_read_topics_reads_every_partition_to_its_end(kafka_bootstrap: str, uid: str) -> None:
    topic = f"t{uid}.audit"
    messages = [(f"k{i % 7}".encode(), orjson.dumps({"n": i})) for i in range(250)]
    messages.append((b"k0", b"not json"))
    await produce(kafka_bootstrap, topic, messages)
    got = await read_topics(kafka_bootstrap, [topic])
    assert sorted(m["n"] for m in got[topic]) == list(range(250))


async def test_consumer_lag_reports_committed_and_end_offsets(kafka_bootstrap: str, uid: str) -> None:
    topic, group = f"t{uid}.lag", f"g{uid}"
    await produce(kafka_bootstrap, topic, [(b"a", b"1"), (b"a", b"2"), (b"a", b"3")])
    before = await consumer_lag(kafka_bootstrap, group, topic)
    assert before == {0: (None, 3)}
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.commit({TopicPartition(topic, 0): 2})
    finally:
        await consumer.stop()
    assert await consumer_lag(kafka_bootstrap, group, topic) == {0: (2, 3)}
