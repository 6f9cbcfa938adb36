"""Readings and dead letters to Kafka: idempotent, ``acks=all``, batched per partition, each
message's callback run once Kafka acknowledged (or gave up on) its batch.

``publish`` is synchronous and cheap: it appends the message to the open batch of its partition
(the key's partition under Kafka's default murmur2 partitioner, as every other producer of the
topic uses) and wakes that partition's sender. A sender hands one batch at a time to aiokafka;
while it is in flight the next batch fills, so the batch size follows the load without a linger.
This skips aiokafka's per-message future and coroutine (about 15 µs of 25 per message measured on
the development machine), which is what lets one process carry thousands of frames a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from airgrid.config.settings import Settings
from airgrid.gateway.metrics import GatewayMetrics
from airgrid.kafka.client import kafka_client_options

log = logging.getLogger(__name__)
Done = Callable[[bool], None]
MAX_BATCH_BYTES = 512 * 1024  # under the broker's default message.max.bytes (1 MiB)


class Sink(Protocol):
    """What the server needs of a publisher (the tests give an in-memory one)."""

    @property
    def congested(self) -> bool: ...

    def publish(self, topic: str, key: bytes | None, value: bytes, done: Done) -> None: ...


class _Lane:
    """One topic partition: the open batch, sealed batches waiting, and its sender task."""

    __slots__ = ("builder", "callbacks", "last_sent", "partition", "sealed", "task", "topic", "wake")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.builder: Any = None
        self.callbacks: list[tuple[Done, float]] = []
        self.sealed: deque[tuple[Any, list[tuple[Done, float]]]] = deque()
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.last_sent = 0.0


class Publisher:
    """The Kafka side of a gateway process."""

    def __init__(
        self,
        settings: Settings,
        metrics: GatewayMetrics,
        *,
        timeout_s: float = 30.0,
        max_pending: int = 100_000,
        linger_s: float = 0.005,
        on_drain: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.timeout_s = timeout_s
        self.max_pending = max_pending
        self.linger_s = linger_s
        self.on_drain = on_drain
        self.pending = 0
        self.last_ack = time.monotonic()
        self._producer: Any = None
        self._partitioner: Any = None
        self._partitions: dict[str, list[int]] = {}
        self._key_partition: dict[tuple[str, bytes], int] = {}
        self._lanes: dict[tuple[str, int], _Lane] = {}
        self._refresh: asyncio.Task[None] | None = None
        metrics.pending.set_function(lambda: self.pending)
        self._idle = asyncio.Event()  # nothing awaits Kafka
        self._idle.set()

    @property
    def congested(self) -> bool:
        return self.pending >= self.max_pending

    def healthy(self) -> bool:
        """Started, and Kafka acknowledged something recently when anything waits for it."""
        if self._producer is None:
            return False
        return self.pending == 0 or time.monotonic() - self.last_ack < self.timeout_s

    async def start(self, topics: list[str]) -> None:
        from aiokafka import AIOKafkaProducer
        from aiokafka.partitioner import DefaultPartitioner

        self._partitioner = DefaultPartitioner()
        self._producer = AIOKafkaProducer(
            acks="all",
            enable_idempotence=True,
            linger_ms=0,
            max_batch_size=MAX_BATCH_BYTES,
            request_timeout_ms=int(self.timeout_s * 1000),
            **kafka_client_options(self.settings),
        )
        await self._producer.start()
        for topic in topics:
            self._partitions[topic] = sorted(await self._producer.partitions_for(topic))
        self._refresh = asyncio.create_task(self._refresh_partitions(topics))

    async def _refresh_partitions(self, topics: list[str]) -> None:
        """Partitions added to a topic change the key -> partition mapping: follow them."""
        while True:
            await asyncio.sleep(30)
            for topic in topics:
                with contextlib.suppress(Exception):
                    now = sorted(await self._producer.partitions_for(topic))
                    if now and now != self._partitions.get(topic):
                        log.info("topic %s now has %d partitions", topic, len(now))
                        self._partitions[topic] = now
                        self._key_partition.clear()

    def _partition_of(self, topic: str, key: bytes | None) -> int:
        parts = self._partitions[topic]
        if key is None:
            return random.choice(parts)
        p = self._key_partition.get((topic, key))
        if p is None:
            p = self._partitioner(key, parts, parts)
            if len(self._key_partition) < 1_000_000:  # station keys: a bounded set in practice
                self._key_partition[(topic, key)] = p
        return int(p)

    def publish(self, topic: str, key: bytes | None, value: bytes, done: Done) -> None:
        """Queue one message; ``done(True)`` once Kafka acknowledged it, ``done(False)`` if not."""
        p = self._partition_of(topic, key)
        lane = self._lanes.get((topic, p))
        if lane is None:
            lane = self._lanes[(topic, p)] = _Lane(topic, p)
            lane.task = asyncio.create_task(self._send(lane))
        builder = lane.builder
        if builder is None:
            builder = lane.builder = self._producer.create_batch()
        if builder.append(key=key, value=value, timestamp=None) is None:  # full: seal it
            lane.sealed.append((builder, lane.callbacks))
            builder = lane.builder = self._producer.create_batch()
            lane.callbacks = []
            if builder.append(key=key, value=value, timestamp=None) is None:
                log.error("a message of %d bytes does not fit a batch", len(value))
                done(False)
                return
        lane.callbacks.append((done, time.monotonic()))
        self.pending += 1
        self._idle.clear()
        lane.wake.set()

    async def _send(self, lane: _Lane) -> None:
        producer = self._producer
        while True:
            await lane.wake.wait()
            lane.wake.clear()
            # at most one batch per partition per linger: frames that trickle in share a batch
            # (aiokafka spends ~100 us on each batch, as much as a frame's whole decoding), and the
            # first frame after a quiet spell goes at once
            wait = lane.last_sent + self.linger_s - time.monotonic()
            if wait > 0 and not lane.sealed:
                await asyncio.sleep(wait)
            lane.last_sent = time.monotonic()
            while lane.sealed or lane.builder is not None:
                if lane.sealed:
                    builder, callbacks = lane.sealed.popleft()
                else:
                    builder, callbacks = lane.builder, lane.callbacks
                    lane.builder, lane.callbacks = None, []
                try:
                    # waits while the partition's previous batch is not yet sent: meanwhile the
                    # next batch fills
                    future = await producer.send_batch(builder, lane.topic, partition=lane.partition)
                except asyncio.CancelledError:
                    self._finish(callbacks, False)
                    raise
                except Exception as exc:
                    log.error("Kafka refused a batch for %s/%d: %s", lane.topic, lane.partition, exc)
                    self._finish(callbacks, False)
                    continue
                future.add_done_callback(lambda f, cbs=callbacks: self._acked(f, cbs))

    def _acked(self, future: asyncio.Future[Any], callbacks: list[tuple[Done, float]]) -> None:
        ok = not future.cancelled() and future.exception() is None
        if not ok:
            self.metrics.publish_errors.inc()
            reason = "cancelled" if future.cancelled() else future.exception()
            log.warning("Kafka did not acknowledge %d messages: %s", len(callbacks), reason)
        self._finish(callbacks, ok)

    def _finish(self, callbacks: list[tuple[Done, float]], ok: bool) -> None:
        now = time.monotonic()
        if ok:
            self.last_ack = now
            observe = self.metrics.publish_seconds.observe
            for _, began in callbacks:
                observe(now - began)
        was_congested = self.congested
        self.pending -= len(callbacks)
        if self.pending == 0:
            self._idle.set()
        for done, _ in callbacks:
            try:
                done(ok)
            except Exception:  # one connection's bug must not stop the others' answers
                log.exception("a publish callback failed")
        if was_congested and self.pending < self.max_pending // 2 and self.on_drain is not None:
            self.on_drain()

    async def drain(self, grace: float) -> bool:
        """Wait until nothing awaits Kafka (True) or ``grace`` seconds pass (False)."""
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
        for lane in self._lanes.values():
            if lane.task is not None:
                lane.task.cancel()
        await asyncio.gather(
            *(lane.task for lane in self._lanes.values() if lane.task), return_exceptions=True
        )
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            self._producer = None
