"""``patches.producer.release`` against the real client and broker: a batch that would linger for
seconds is sent at once, so the waits for acknowledgements (commits, the owner's outbox, alarms
before state) never pay for the producer's linger."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from airgrid.patches.producer import release

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(60)]
LINGER_MS = 4000


async def test_release_sends_a_lingering_batch_at_once(kafka_bootstrap: str, uid: str) -> None:
    topic = f"{uid}.linger"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=LINGER_MS, acks="all")
    await producer.start()
    try:
        warm = await producer.send(topic, b"warm")  # metadata and topic creation
        release(producer)
        await asyncio.wait_for(warm, 30)

        lingering = await producer.send(topic, b"lingers")
        done, _ = await asyncio.wait([lingering], timeout=1.0)
        assert not done, "the linger is not in effect: this test proves nothing"

        released = await producer.send(topic, b"released")
        release(producer)
        # both batches go now, seconds before the linger of the first would have expired
        await asyncio.wait_for(asyncio.gather(lingering, released), LINGER_MS / 1000 / 2)
        assert released.result().offset == lingering.result().offset + 1
    finally:
        await producer.stop()
