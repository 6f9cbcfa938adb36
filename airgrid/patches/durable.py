"""A consumer that never commits an offset before what its events produced is in Kafka.

Faust commits source offsets on a timer without flushing the producer first. Table changelog
records and output messages of events that are already acknowledged may still sit in the
producer's buffer; a SIGKILL then loses them while the offsets say the events were done: a
station's state rolls back, and the readings that built it are never seen again (the kill
auditor found exactly this: alarms lost). Waiting for those writes before every commit restores
at-least-once for tables and outputs alike, for the price of one wait per commit interval.

Faust's own ``producer.flush()`` is not enough for that wait: its buffer flush returns as soon as
one message takes longer than 0.1 s to hand over (as it does while a broker is slow or away), and
the message being handed over is in neither the buffer nor the client. So the producer keeps every
changelog write (``send_soon``) until Kafka has acknowledged it, and the commit waits for those.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

from aiokafka.structs import TopicPartition
from faust.streams import _current_event, current_event
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.transport.drivers.aiokafka import Producer as AIOKafkaProducer
from mode.utils.queues import FlowControlEvent

log = logging.getLogger(__name__)
FLUSH_TIMEOUT_S = 5.0


class TrackingProducer(AIOKafkaProducer):  # type: ignore[misc]
    """The aiokafka driver's producer, remembering each changelog write until Kafka has it."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.unacknowledged: set[asyncio.Future[Any]] = set()
        self.failed = 0  # writes Kafka refused for good (after the producer's own retries)

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
    for acknowledgements (a commit, the owner's outbox) must not pay for it. aiokafka internals,
    pinned in pyproject.toml and checked against a real broker in the tests."""
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


def without_duplicates(acked: list[int], committing: int | None) -> int:
    """Sort ``acked`` in place, without repeats nor offsets below ``committing``; return how many
    entries went.

    Faust keeps a partition's acked offsets in a list and commits up to the end of its first run of
    consecutive numbers. After a rebalance its gap bookkeeping (offsets skipped between two fetched
    messages count as done) can add a range of offsets that were already acked, so every offset
    appears twice: ``[n, n, n+1, n+1, ...]`` splits into runs of one or two, and each commit then
    advances the offset by one (seen: a minute and more to commit a drained backlog; a crash in
    that window re-reads it). A repeated offset tells nothing new: dropping it leaves the same set
    of done offsets, so at-least-once is unchanged."""
    floor = -1 if committing is None else committing
    kept = sorted({o for o in acked if o >= floor})
    dropped = len(acked) - len(kept)
    if dropped:
        acked[:] = kept
    return dropped


class FlushingConsumer(AIOKafkaConsumer):  # type: ignore[misc]
    """The aiokafka driver's consumer, waiting for the producer's writes in front of each commit,
    and never counting a message it skipped as done."""

    def __post_init__(self) -> None:
        super().__post_init__()
        # per partition, the offsets ``[low, new)`` the last ``_new_offset`` took as a batch
        self._taken: dict[Any, tuple[int, int]] = {}
        # per partition, offsets a stage could not handle and left to be read again (``hold``)
        self._held: dict[Any, set[int]] = {}

    def hold(self, message: Any) -> None:
        """Leave ``message`` to be read again after the next rebalance (or restart): it counts as
        neither acknowledged nor in flight, and no commit passes its offset (worker/retry.py).

        Marking it acknowledged is what keeps the stream from acknowledging it: Faust's Cython
        stream iterator (the one in use when its extension is installed) inlines the
        acknowledgement and bypasses ``Consumer.ack``, but it, like the Python one, skips a message
        already marked. Removed from the in-flight set, a rebalance does not wait for it."""
        message.acked = True
        self._unacked_messages.discard(message)
        self._held.setdefault(message.tp, set()).add(message.offset)

    def ack(self, message: Any) -> bool:
        # While a rebalance suspends the flow, a stream skips the messages it receives (flow
        # inactive, or fetched under the previous generation) and acks them as if processed; the
        # rebalance's own commit then moves the offset past them and they are never processed:
        # readings lost from a station's state, alarms lost or different (found by a worker that
        # stalls past its session timeout under CPU load). A stream tracks every message it
        # processes before it processes it, so a message that was never tracked was skipped: leave
        # its offset uncommitted, the consumer reads it again after the rebalance (Faust's Cython
        # iterator does not acknowledge a skipped message at all).
        if not getattr(message, "tracked", True):
            message.acked = True
            return False
        result: bool = super().ack(message)
        return result

    def _new_offset(self, tp: Any) -> int | None:
        # Faust takes the batch it returns out of the acked list at once; remember it, so a commit
        # that does not happen can give it back (see _commit_offsets)
        acked = self._acked[tp]
        low = None
        if acked:
            low = min(acked)
            gap = self._gap[tp]
            if gap:  # gap offsets below the lowest ack join the batch too
                low = min([low, *(iv.begin for iv in gap.overlap(0, max(acked)))])
        new: int | None = super()._new_offset(tp)
        held = self._held.get(tp)
        if held and new is not None and new > min(held):
            # the batch runs past a held message: commit up to it, give the rest back
            hole = min(held)
            rest = [o for o in range(hole, new) if o not in held]
            acked.extend(rest)
            self._acked_index[tp].update(rest)
            new = hole if hole > (self._committed_offset[tp] or 0) else None
        if new is not None and low is not None:
            self._taken[tp] = (low, new)
        if acked and (new is not None or len(acked) > 1):
            dropped = without_duplicates(acked, new)
            if dropped:
                log.info("%s: %d repeated or committed offsets dropped from the acked list", tp, dropped)
        return new

    async def perform_seek(self) -> None:
        """Faust's seek to the committed offsets after a rebalance, made to move every partition.

        aiokafka's ``seek_to_committed`` seeks only partitions committed above offset 0: one never
        committed (a fresh group) or committed at 0 keeps its fetch position, past the messages
        fetched but not processed before the rebalance (those skipped while the flow was
        suspended, those a stage held): they were never read again, while Faust's own read offset
        went back to None. So those partitions go back too: to 0, or to the beginning."""
        await super().perform_seek()
        self._held.clear()  # every held offset lies at or past a committed one: read again now
        back = [
            tp
            for tp in self.assignment()
            if self.app.topics.acks_enabled_for(tp.topic) and not self._committed_offset.get(tp)
        ]
        if back:
            await self._thread.seek_to_beginning(*(TopicPartition(tp.topic, tp.partition) for tp in back))
            for tp in back:
                self._read_offset[tp] = None

    def _give_back(self, offsets: Mapping[Any, int]) -> None:
        """A commit that did not happen: put its batches back in the acked lists, so the next
        commit covers them. Without this Faust's ``_new_offset`` finds the list starting above
        the committed offset and returns None from then on: no commit of the partition until the
        next rebalance, and a crash replays everything read since."""
        for tp in offsets:
            batch = self._taken.pop(tp, None)
            if batch is None or tp not in self._acked:  # revoked meanwhile: nothing to give back
                continue
            low, new = batch
            acked = self._acked[tp]
            acked.extend(range(low, new))
            without_duplicates(acked, None)
            self._acked_index[tp].update(range(low, new))

    async def _commit_offsets(self, offsets: Mapping[Any, int], start_new_transaction: bool = True) -> bool:
        producer = self.app.producer
        if not isinstance(producer, TrackingProducer):  # create_app installs both classes together
            raise TypeError(f"FlushingConsumer needs a TrackingProducer, not {type(producer).__name__}")
        if not await producer.drain(FLUSH_TIMEOUT_S):
            # while the broker is away or a rebalance has suspended the flow the writes may not
            # complete; a commit that is not made now is made later (the events replay, none lost)
            log.warning("writes unacknowledged after %.0f s: offset commit postponed", FLUSH_TIMEOUT_S)
            self._give_back(offsets)
            return False
        if producer.failed:
            # a state or output write was refused for good: committing would make it permanent;
            # keep the offsets where they are, so a restart replays and writes it again
            log.error(
                "%d producer writes failed; offsets stay uncommitted until the worker restarts",
                producer.failed,
            )
            self._give_back(offsets)
            return False
        result: bool = await super()._commit_offsets(offsets, start_new_transaction=start_new_transaction)
        if result:
            for tp in offsets:
                self._taken.pop(tp, None)
        else:
            self._give_back(offsets)
        return result


class StreamFlowControl(FlowControlEvent):  # type: ignore[misc]
    """The app's flow control, which never empties the streams' queues while they are flowing.

    ``resume()`` empties every stream's queue, which is right after a ``suspend()`` (what was
    queued before a rebalance belongs to the previous assignment; the consumer reads it again from
    the committed offsets). But when a rebalance needs no table recovery, or once it is done,
    Faust's recovery resumes the flow, then the stream partitions, awaits the seek to the committed
    offsets and only then calls ``resume()`` a second time: what the fetcher delivered in between
    is dropped from the queues while the consumer's position is already past it. The agent then
    goes on with the next records of the same partitions, so a station's ``source`` passes readings
    it never applied; when the consumer reads them again (the commit cannot pass them) they look
    like replays and are skipped for good: alarms lost, or different (found by a worker that
    stalls past its session timeout under CPU load). So a resume while the flow is active keeps
    the streams' queues and empties only the table changelog queue, as before.
    """

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app

    def resume(self) -> None:
        if not self.is_active():
            super().resume()
            return
        changelog = getattr(self.app.tables, "_changelog_queue", None)
        if changelog is not None:
            changelog.clear()


def event_now() -> Any:
    """The event the calling agent is processing (None outside a stream)."""
    return current_event()


@contextlib.contextmanager
def writing_as(event: Any) -> Iterator[None]:
    """Table writes inside this block belong to ``event``. A table write goes to the changelog
    partition (and the store partition) of the event being processed, which Faust looks up in a
    context variable; a write made later on behalf of an earlier event (the owner's group commit)
    must name that event, or the row lands in another station's partition: a worker that
    recovers the table from its changelog then finds an older version of the task (found by the
    kill test with the memory store: a reminder applied twice). Faust internals, pinned in
    pyproject.toml."""
    if event is None:
        yield
        return
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
