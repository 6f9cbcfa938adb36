"""A consumer that never commits an offset before what its events produced is in Kafka.

Faust commits source offsets on a timer without flushing the producer first. Table changelog
records and output messages of events that are already acknowledged may still sit in the
producer's buffer; a SIGKILL then loses them while the offsets say the events were done: a
station's state rolls back, and the readings that built it are never seen again (the kill
auditor found exactly this: alarms lost). Flushing the producer before every commit restores
at-least-once for tables and outputs alike, for the price of one flush per commit interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer

log = logging.getLogger(__name__)
FLUSH_TIMEOUT_S = 5.0


class FlushingConsumer(AIOKafkaConsumer):  # type: ignore[misc]
    """The aiokafka driver's consumer, with a producer flush in front of each commit."""

    async def _commit_offsets(self, offsets: Mapping[Any, int], start_new_transaction: bool = True) -> bool:
        try:
            # bounded: while a rebalance has suspended the flow, the producer buffer may not drain;
            # a commit that is not made now is made later (the events are replayed, never lost)
            await asyncio.wait_for(self.app.producer.flush(), FLUSH_TIMEOUT_S)
        except TimeoutError:
            log.warning("producer flush took over %.0f s: offset commit postponed", FLUSH_TIMEOUT_S)
            return False
        result: bool = await super()._commit_offsets(offsets, start_new_transaction=start_new_transaction)
        return result
