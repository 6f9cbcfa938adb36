"""Patch: a producer that remembers every table write until Kafka has acknowledged it.

Defect (Faust 0.15): ``Producer.flush()`` returns as soon as one buffered message takes longer
than 0.1 s to hand over (a slow or absent broker), and the message being handed over is then in
neither Faust's buffer nor the client. A commit that waits for that flush can pass a table write
that is later lost: after a SIGKILL a station's state rolls back while its readings count as done
(found by the kill auditor: alarms lost). So every changelog write (``send_soon``) is tracked until
acknowledged; the consumer's commit waits for those (``commit_after_writes``) and the task owner
waits for them before it publishes (``acknowledged``).

Not a defect but a missing setting: Faust gives its producer ``enable_idempotence`` only inside
transactions (``processing_guarantee="exactly_once"``, ``Producer._settings_extra``); this class
asks for it always, with ``acks=all``, so a send retried after a leader election is written once.

Private names: Faust ``Producer.send_soon``, ``Producer._settings_extra``, ``Producer.linger_ms``,
``Producer._producer`` (the aiokafka client); aiokafka ``AIOKafkaProducer._message_accumulator``
with its ``_batches`` and ``_waiter_future``, and a batch's ``_builder`` (``release``).
Tests: tests/unit/test_patches.py (tracked writes, drain), tests/integration/test_linger_release.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from faust.transport.drivers.aiokafka import Producer as FaustAIOKafkaProducer


class TrackingProducer(FaustAIOKafkaProducer):  # type: ignore[misc]
    """The aiokafka driver's producer, remembering each changelog write until Kafka has it."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.unacknowledged: set[asyncio.Future[Any]] = set()
        self.failed = 0  # writes Kafka refused for good (after the producer's own retries)

    def _settings_extra(self) -> Mapping[str, Any]:
        # Faust asks aiokafka for idempotence only inside transactions (exactly_once); a retry
        # after a leader moved (a broker killed, a rolling restart) must not write a table row or
        # an event twice, nor out of order, either
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}

    def send_soon(self, fut: Any) -> None:
        self.unacknowledged.add(fut)
        fut.add_done_callback(self._settled)
        super().send_soon(fut)

    def _settled(self, fut: asyncio.Future[Any]) -> None:
        self.unacknowledged.discard(fut)
        if fut.cancelled() or fut.exception() is not None:
            self.failed += 1

    async def drain(self, within: float | None = None) -> bool:
        """Wait until every write made so far is acknowledged: as long as it takes, or at most
        ``within`` seconds (False when that was not enough). Lingering batches go at once: a
        wait for acknowledgements never sits out the producer's linger."""
        loop = asyncio.get_running_loop()
        deadline = None if within is None else loop.time() + within
        pending = set(self.unacknowledged)
        while pending:
            # a write may reach the client after this release (it was still in Faust's buffer):
            # release again every linger interval until all are acknowledged
            release(self._producer)
            step = self.linger_ms / 1000 if self.linger_ms else None
            if deadline is not None:
                left = deadline - loop.time()
                if left <= 0:
                    return False
                step = left if step is None else min(step, left)
            _, pending = await asyncio.wait(pending, timeout=step)
        client = self._producer
        if client is None:
            return True
        release(client)
        # sends that were not "soon" (outputs) are in the client already: wait for the batches it
        # holds now. Not ``self.flush()``: Faust's buffer flush returns only once its buffer is
        # empty, which under a steady stream of table writes from other agents can take seconds
        # (the owner's task events waited for it); every write in that buffer is in
        # ``unacknowledged`` and was waited for above.
        rest = None if deadline is None else max(0.0, deadline - loop.time())
        try:
            await asyncio.wait_for(client.flush(), rest)
        except TimeoutError:
            return False
        return True


def release(client: Any) -> None:
    """Close the open batches of an ``AIOKafkaProducer`` and wake its sender, so they are sent
    now rather than when their linger expires (what aiokafka's ``flush_for_commit`` does before it
    waits). A linger batches the changelog writes of many readings into few requests; the waits
    for acknowledgements (a commit, the owner's outbox) must not pay for it."""
    acc = getattr(client, "_message_accumulator", None)  # None: no client (yet)
    if acc is None:
        return
    for batches in acc._batches.values():
        for batch in batches:
            batch._builder.close()
    waiter = acc._waiter_future
    if not waiter.done():
        waiter.set_result(None)


def send_now(producer: Any) -> None:
    """Release the lingering batches of the app's producer (a no-op before its client exists)."""
    release(getattr(producer, "_producer", None))


async def acknowledged(producer: Any) -> None:
    """Wait until Kafka has every write ``producer`` was given (a plain flush for other classes)."""
    if isinstance(producer, TrackingProducer):
        await producer.drain()
    else:
        await producer.flush()
