"""Which events of a task's outbox already reached ``task-events``: read once after a crash.

Only the owner of a station partition writes that partition of ``task-events`` (same key, same
partition count), so the events a killed owner managed to publish are among the last records of
the partition. Reading that tail before re-sending turns an outbox re-send into "send only what
is missing": no duplicate in the common case. If the tail cannot be read, everything is re-sent
(at least once, byte-identical, same event ids).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from airgrid.config.settings import Settings
from airgrid.kafka.client import kafka_client_options, partitions_of

log = logging.getLogger(__name__)
TAIL = 500  # records read back from the end of the partition


async def published_ids(settings: Settings, topic: str, key: bytes, budget_s: float = 10.0) -> set[str]:
    """Event ids among the last ``TAIL`` records of the partition of ``topic`` that ``key`` goes to
    (the producer's default partitioner: murmur2 of the key over all partitions)."""
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **kafka_client_options(settings))  # type: ignore[arg-type]
    await consumer.start()
    try:
        partitions = (await partitions_of(consumer, [topic]))[topic]
        if not partitions:
            raise LookupError(f"topic {topic} has no partitions")
        partition = DefaultPartitioner()(key, partitions, partitions)
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        start = max(0, end - TAIL)
        consumer.seek(tp, start)
        ids: set[str] = set()
        position = start
        deadline = asyncio.get_running_loop().time() + budget_s
        while position < end:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError(f"read {position - start} of {end - start} records of {topic}/{partition}")
            batch = await consumer.getmany(tp, timeout_ms=int(min(left, 1.0) * 1000))
            for msg in batch.get(tp, []):
                position = msg.offset + 1
                with contextlib.suppress(orjson.JSONDecodeError, TypeError, AttributeError):
                    ids.add(str(orjson.loads(msg.value).get("event_id")))
        return ids
    finally:
        await consumer.stop()
