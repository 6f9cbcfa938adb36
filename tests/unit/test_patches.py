"""The producer the worker commits behind: it remembers every changelog write until Kafka has it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from faust.types.tuples import TP, FutureMessage, PendingMessage

from airgrid.config.settings import load_settings
from airgrid.patches import Consumer
from airgrid.patches.producer import TrackingProducer, acknowledged
from airgrid.patches.repeated_offsets import without_duplicates
from airgrid.worker.binding import create_app


def _message() -> FutureMessage:
    pending = PendingMessage(
        channel=None,  # type: ignore[arg-type]
        key=b"k",
        value=b"v",
        partition=0,
        timestamp=None,
        headers=None,
        key_serializer=None,
        value_serializer=None,
        callback=None,
    )
    return FutureMessage(pending)


async def test_writes_are_tracked_until_acknowledged_and_failures_counted(tmp_path: Path) -> None:
    app = create_app(load_settings(store="memory", data_dir=tmp_path))
    producer = app.producer
    assert isinstance(producer, TrackingProducer)
    client = FakeClient()
    producer._producer = client  # the client is not started here
    first, second = _message(), _message()
    producer.send_soon(first)
    producer.send_soon(second)
    assert producer.unacknowledged == {first, second}
    assert not await producer.drain(0.05)  # not acknowledged yet: the commit must wait
    first.set_result(None)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert producer.unacknowledged == {second}
    waiter = asyncio.create_task(acknowledged(producer))
    await asyncio.sleep(0.05)
    assert not waiter.done()  # waits as long as it takes
    second.set_exception(RuntimeError("refused"))
    await asyncio.wait_for(waiter, 1)
    assert producer.unacknowledged == set() and producer.failed == 1
    assert await producer.drain(0.05) and client.flushed


class FakeClient:
    """Stands in for the aiokafka client: its flush waits for the batches it holds."""

    def __init__(self) -> None:
        self.flushed = 0

    async def flush(self) -> None:
        self.flushed += 1


async def test_a_drain_waits_only_for_the_writes_made_before_it(tmp_path: Path) -> None:
    app = create_app(load_settings(store="memory", data_dir=tmp_path))
    producer = app.producer
    assert isinstance(producer, TrackingProducer)
    producer._producer = FakeClient()

    async def never() -> None:  # Faust's buffer flush while other agents keep writing
        await asyncio.Event().wait()

    producer.flush = never  # type: ignore[method-assign]
    mine = _message()
    producer.send_soon(mine)
    drain = asyncio.create_task(producer.drain(2.0))
    await asyncio.sleep(0.01)
    producer.send_soon(_message())  # another agent's write, after the drain began: never acked
    mine.set_result(None)  # type: ignore[arg-type]
    assert await asyncio.wait_for(drain, 1.0)


async def test_a_resume_while_the_streams_flow_keeps_their_queues(tmp_path: Path) -> None:
    app = create_app(load_settings(store="memory", data_dir=tmp_path))
    flow = app.flow_control
    stream_queue = app.FlowControlQueue(maxsize=100, clear_on_resume=True)  # what a topic's channel uses
    changelog_queue = app.tables.changelog_queue
    stale = "queued before the rebalance"
    stream_queue.put_nowait(stale)
    flow.resume()  # after a suspend: what was queued before belongs to the old assignment
    assert stream_queue.empty()
    stream_queue.put_nowait("fetched while flowing")
    changelog_queue.put_nowait("changelog")
    flow.resume()  # again, while flowing: the consumer's position is past what is queued
    assert stream_queue.get_nowait() == "fetched while flowing"
    assert changelog_queue.empty()  # table recovery's queue is still emptied, as Faust does
    stream_queue.put_nowait("queued before a suspend")
    flow.suspend()
    flow.resume()
    assert stream_queue.empty()


async def test_records_fetched_during_the_recovery_seek_are_not_dropped(tmp_path: Path) -> None:
    """Faust's recovery resumes the stream partitions, awaits the seek, then resumes the flow control
    a second time: records the fetcher queued for a stream in between must still be there."""
    app = create_app(load_settings(store="memory", data_dir=tmp_path))
    stream_queue = app.FlowControlQueue(maxsize=100, clear_on_resume=True)
    app.flow_control.resume()  # Faust's recovery: no changelog to read, "Resuming flow..."

    class Consumer:
        def assignment(self) -> set[TP]:
            return {TP("readings", 0)}

        def resume_partitions(self, tps: Any) -> None:
            pass

        async def perform_seek(self) -> None:
            stream_queue.put_nowait("fetched while the seek was awaited")

        def resume_flow(self) -> None:
            pass

    class Fetcher:
        async def maybe_start(self) -> None:
            pass

    app.consumer = Consumer()  # type: ignore[assignment]
    app._fetcher = Fetcher()  # type: ignore[assignment]
    await app.tables.recovery.on_recovery_completed(app.consumer_generation_id)
    assert stream_queue.get_nowait() == "fetched while the seek was awaited"


def test_offsets_acked_twice_after_a_rebalance_commit_in_one_go(tmp_path: Path) -> None:
    """After a rebalance, Faust's gap bookkeeping can add offsets that were already acked: every
    offset is then listed twice and Faust alone commits one more offset per commit interval (49
    commits here). The worker's consumer drops the repeats and commits the run at once."""
    app = create_app(load_settings(store="memory", data_dir=tmp_path))
    consumer = app.consumer
    assert isinstance(consumer, Consumer)
    tp = TP("readings", 1)
    consumer._committed_offset[tp] = 1000
    consumer._acked[tp] = list(range(1000, 1050))
    consumer._acked_index[tp] = set(range(1000, 1050))
    consumer._gap[tp].addi(1001, 1051)  # 1001..1050 skipped between two fetched messages
    commits = []
    while consumer._committed_offset[tp] < 1051 and len(commits) < 100:
        new = consumer._new_offset(tp)
        assert new is not None
        commits.append(new)
        consumer._committed_offset[tp] = new
    assert commits == [1002, 1051]
    assert consumer._acked[tp] == [] and consumer._new_offset(tp) is None


def test_acked_offsets_lose_repeats_and_committed_ones_only() -> None:
    acked = [7, 5, 5, 9, 6, 7, 12]
    assert without_duplicates(acked, 6) == 3  # one 5 twice below 6, one 7 repeated
    assert acked == [6, 7, 9, 12]  # the gap at 8 stays: nothing past it is committed
    assert without_duplicates(acked, None) == 0 and acked == [6, 7, 9, 12]


async def test_a_postponed_commit_gives_its_batch_back_and_the_next_commit_covers_it(tmp_path: Path) -> None:
    """Faust takes a batch out of the acked list before the commit; when the commit is postponed
    (writes not acknowledged in time) the batch must go back, or Faust finds the list starting
    above the committed offset and never commits the partition again until a rebalance."""
    app = create_app(load_settings(store="memory", data_dir=tmp_path))
    consumer, producer = app.consumer, app.producer
    tp = TP("readings", 1)
    consumer.assignment = lambda: {tp}
    committed: list[dict[Any, int]] = []

    async def commit(offsets: dict[Any, int]) -> bool:
        committed.append(dict(offsets))
        return True

    drained = [False]

    async def drain(within: float | None = None) -> bool:
        return drained[0]

    consumer._commit = commit
    producer.drain = drain
    consumer._committed_offset[tp] = 1000
    for offset in range(1000, 1100):
        consumer._acked[tp].append(offset)
        consumer._acked_index[tp].add(offset)
    assert not await consumer._commit_tps([tp], True)  # the broker is slow: postponed
    assert committed == [] and consumer._acked[tp] == list(range(1000, 1100))
    drained[0] = True
    for offset in range(1100, 1200):
        consumer._acked[tp].append(offset)
        consumer._acked_index[tp].add(offset)
    assert await consumer._commit_tps([tp], True)
    assert committed == [{tp: 1200}] and consumer._committed_offset[tp] == 1200


def test_the_patches_refuse_framework_versions_they_were_not_written_for() -> None:
    from airgrid.patches import WRITTEN_FOR, PatchError, check_versions

    check_versions(dict(WRITTEN_FOR))  # the pinned versions pass
    check_versions()  # and so do the installed ones (pyproject.toml pins them)
    with pytest.raises(
        PatchError,
        match=r"written for aiokafka 0\.14\.0, faust-streaming 0\.15\.3, mode-streaming 0\.7\.1; "
        r"installed: faust-streaming 0\.16\.0",
    ):
        check_versions({**WRITTEN_FOR, "faust-streaming": "0.16.0"})
    with pytest.raises(PatchError, match="aiokafka missing"):
        check_versions({"faust-streaming": WRITTEN_FOR["faust-streaming"]})
    with pytest.raises(PatchError, match=r"mode-streaming 0\.8\.0"):
        check_versions({**WRITTEN_FOR, "mode-streaming": "0.8.0"})  # inline_delivery overrides its wait_first


def test_install_puts_every_consumer_patch_in_place(tmp_path: Path) -> None:
    from airgrid.patches.barrier import CommitBarrier
    from airgrid.patches.commit_after_writes import CommitAfterWrites
    from airgrid.patches.fetch_batching import FetchBatching
    from airgrid.patches.inline_delivery import InlineDelivery
    from airgrid.patches.repeated_offsets import RepeatedOffsets
    from airgrid.patches.seek import SeekEveryPartition
    from airgrid.patches.skipped_messages import SkippedMessages

    app = create_app(load_settings(store="memory", data_dir=tmp_path))
    consumer, producer = app.consumer, app.producer
    assert isinstance(producer, TrackingProducer)
    mro = type(consumer).__mro__
    patches = [
        FetchBatching,
        InlineDelivery,
        CommitAfterWrites,
        CommitBarrier,
        RepeatedOffsets,
        SkippedMessages,
        SeekEveryPartition,
    ]
    assert [c for c in mro if c in patches] == patches  # each _new_offset wraps the next one
    assert type(app.flow_control).__name__ == "StreamFlowControl"


async def test_the_producer_is_idempotent_with_acks_all(tmp_path: Path) -> None:
    """Faust asks for idempotence only in transactions; a retried send must not write twice."""
    app = create_app(load_settings(store="memory", data_dir=tmp_path))
    client = app.producer._new_producer()  # built, not started: no broker needed
    try:
        assert client._txn_manager is not None  # aiokafka's sequence numbers: idempotence is on
        assert client._sender._acks == -1  # all in-sync replicas
    finally:
        await client.stop()


def test_faust_never_creates_topics_itself(tmp_path: Path) -> None:
    """ensure_topics creates them all before the worker starts; Faust's creation asks the
    metadata's controller id (in KRaft any broker, one just killed too) and failed a start."""
    app = create_app(load_settings(store="memory", data_dir=tmp_path))
    assert app.conf.topic_allow_declare is False


def test_a_message_skipped_during_a_rebalance_is_not_counted_as_done(tmp_path: Path) -> None:
    """Faust's pure-Python stream acknowledges a message it skipped (flow suspended) as if it had
    processed it; the consumer keeps its offset out of the acked list, so no commit passes it."""
    app = create_app(load_settings(store="memory", data_dir=tmp_path))
    consumer = app.consumer
    tp = TP("t.readings", 0)
    app.topics._acking_topics = {"t.readings"}

    class Message:
        def __init__(self, offset: int, tracked: bool) -> None:
            self.tp, self.topic, self.partition, self.offset = tp, tp.topic, 0, offset
            self.tracked, self.acked = tracked, False

    skipped, processed = Message(3, tracked=False), Message(4, tracked=True)
    assert not consumer.ack(skipped) and skipped.acked
    assert consumer.ack(processed)
    assert consumer._acked[tp] == [4]  # 3 stays a hole: the commit stops before it


def test_no_commit_passes_a_reading_whose_checkpoint_is_not_written(tmp_path: Path) -> None:
    """Ingest defers every reading until the checkpoint after it is written: the commit stops
    before the first unsaved one, and goes on once ``saved`` names its topic."""
    app = create_app(load_settings(store="memory", data_dir=tmp_path))
    consumer = app.consumer
    readings, alarms = TP("t.readings", 0), TP("t.alarms", 0)

    class Message:
        def __init__(self, tp: TP, offset: int) -> None:
            self.tp, self.offset = tp, offset

    for offset in range(10, 15):
        consumer.defer(Message(readings, offset))
        consumer._acked[readings].append(offset)
        consumer._acked_index[readings].add(offset)
    consumer.defer(Message(alarms, 3))  # another stage's partition is not ingest's to release
    consumer._committed_offset[readings] = 10
    assert consumer._new_offset(readings) is None  # 10 is unsaved: nothing to commit
    consumer.saved({"t.readings"})
    assert consumer._new_offset(readings) == 15
    assert consumer._barrier(alarms) == 3


async def test_a_seek_does_not_release_readings_whose_checkpoint_is_not_written(tmp_path: Path) -> None:
    """Faust's recovery resumes the flow, then awaits the seek to the committed offsets: ingest
    may process (and defer) readings of the new assignment while it waits. The seek must not
    release them: only the checkpoint that writes their states may (the campaign lost alarms
    when a commit passed them and a kill came before that checkpoint)."""
    app = create_app(load_settings(store="memory", data_dir=tmp_path))
    consumer = app.consumer
    readings = TP("t.readings", 0)

    class Message:
        def __init__(self, offset: int) -> None:
            self.tp, self.offset = readings, offset

    async def seek_to_committed() -> dict[TP, int]:
        for offset in range(10, 15):  # processed while the seek was awaited
            consumer.defer(Message(offset))
            consumer._acked[readings].append(offset)
            consumer._acked_index[readings].add(offset)
        return {readings: 10}

    gone, passed = TP("t.readings", 1), TP("t.readings", 2)
    consumer._unsaved.update({gone: 7, passed: 3})  # deferred in an earlier assignment
    consumer._committed_offset[passed] = 900  # another worker committed past it since
    consumer.seek_to_committed = seek_to_committed  # type: ignore[method-assign]
    consumer.assignment = lambda: {readings, passed}  # type: ignore[method-assign]
    await consumer.perform_seek()
    assert consumer._committed_offset[readings] == 10
    assert consumer._new_offset(readings) is None  # nothing passes 10 before its checkpoint
    # the states of those two were dropped with their assignment: no barrier at an old offset
    assert consumer._barrier(gone) is None and consumer._barrier(passed) is None
    consumer.saved({"t.readings"})
    assert consumer._new_offset(readings) == 15


async def test_the_livelock_probe_skips_a_partition_whose_position_is_being_reset(tmp_path: Path) -> None:
    """Faust's livelock detector read aiokafka's ``position`` of a partition waiting for an offset
    reset (during the seek after a rebalance): the property's assertion crashed the worker. The
    probe skips that partition; one with a known position is probed as before."""
    from aiokafka.consumer.subscription_state import TopicPartitionState

    app = create_app(load_settings(store="memory", data_dir=tmp_path))
    consumer = app.consumer
    thread = consumer._thread
    resetting, known = TP("t.readings", 0), TP("t.readings", 1)

    class Assignment:
        active = True

        def __init__(self) -> None:
            self.states = {p: TopicPartitionState(self) for p in (0, 1)}
            for state in self.states.values():
                state.timestamp = time.time() * 1000  # fetched just now
                state.highwater = 100
            self.states[1].seek(100)  # caught up: nothing to report

        def state_value(self, tp: Any) -> Any:
            return self.states[tp.partition]

    class Fake:
        pass

    aio = Fake()
    aio._fetcher = Fake()  # type: ignore[attr-defined]
    aio._fetcher._subscriptions = Fake()  # type: ignore[attr-defined]
    aio._fetcher._subscriptions.subscription = Fake()  # type: ignore[attr-defined]
    aio._fetcher._subscriptions.subscription.assignment = Assignment()  # type: ignore[attr-defined]
    thread._consumer = aio
    thread.time_started = time.monotonic()
    now = time.monotonic()
    assert consumer.verify_event_path(now, resetting) is None  # Faust's own: AssertionError
    assert consumer.verify_event_path(now, known) is None


# --- inline delivery (patches/inline_delivery.py) ------------------------------------------------


async def test_the_fetch_loop_delivers_a_message_inline_when_nothing_waits(tmp_path: Path) -> None:
    """Faust's fetch loop delivers each message raced against a rebalance; mode's wait_first made
    four tasks for it. A delivery that does not wait runs in the fetcher's own task."""
    consumer = create_app(load_settings(store="memory", data_dir=tmp_path)).consumer
    ran_in: list[asyncio.Task[Any] | None] = []

    async def deliver() -> str:
        ran_in.append(asyncio.current_task())
        return "delivered"

    result = await consumer.wait_first(deliver(), consumer.suspend_flow.wait())
    assert ran_in == [asyncio.current_task()]
    assert result.results == ["delivered"] and not result.stopped
    # any other call keeps mode's path: each awaitable in a task of its own
    other = await consumer.wait_first(deliver(), asyncio.Event().wait())
    assert ran_in[1] is not asyncio.current_task() and other.results == ["delivered"]
    # and so does a delivery while the flow is suspended
    consumer.suspend_flow.set()
    await consumer.wait_first(deliver(), consumer.suspend_flow.wait())
    assert ran_in[2] is not asyncio.current_task()


async def test_a_delivery_that_waits_finishes_in_the_same_task(tmp_path: Path) -> None:
    consumer = create_app(load_settings(store="memory", data_dir=tmp_path)).consumer
    room = asyncio.get_running_loop().create_future()
    tasks: list[asyncio.Task[Any] | None] = []

    async def deliver() -> str:
        tasks.append(asyncio.current_task())
        got = await room  # a full queue: the delivery waits for room
        await asyncio.sleep(0)  # a bare yield too
        tasks.append(asyncio.current_task())
        return got

    asyncio.get_running_loop().call_later(0.05, room.set_result, "room")
    result = await consumer.wait_first(deliver(), consumer.suspend_flow.wait())
    assert result.results == ["room"]
    assert tasks == [asyncio.current_task()] * 2
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_rebalance_cancels_a_waiting_delivery_and_not_the_fetch_loop(tmp_path: Path) -> None:
    consumer = create_app(load_settings(store="memory", data_dir=tmp_path)).consumer
    seen: list[str] = []

    async def deliver() -> None:
        try:
            await asyncio.get_running_loop().create_future()  # a queue that never has room
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    asyncio.get_running_loop().call_later(0.05, consumer.suspend_flow.set)
    suspended = consumer.suspend_flow.wait()
    result = await consumer.wait_first(deliver(), suspended)
    assert seen == ["cancelled"]
    assert result.done == [suspended] and not result.stopped  # as Faust's race answers
    me = asyncio.current_task()
    assert me is not None and me.cancelling() == 0
    await asyncio.sleep(0.01)  # the fetch loop goes on: no cancellation left pending on it


async def test_a_timeout_inside_a_waiting_delivery_stays_inside_it(tmp_path: Path) -> None:
    """Faust's producer-buffer flush waits with a timeout; it must time out the delivery's wait,
    not cancel the fetch loop (a delivery never changes task half-way)."""
    consumer = create_app(load_settings(store="memory", data_dir=tmp_path)).consumer

    async def deliver() -> str:
        try:
            await asyncio.wait_for(asyncio.Event().wait(), timeout=0.05)
        except TimeoutError:
            return "flushed what it could"
        return "never"

    result = await consumer.wait_first(deliver(), consumer.suspend_flow.wait())
    assert result.results == ["flushed what it could"]
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_delivery_error_reaches_the_fetch_loop_inline_or_after_a_wait(tmp_path: Path) -> None:
    consumer = create_app(load_settings(store="memory", data_dir=tmp_path)).consumer

    async def at_once() -> None:
        raise ValueError("undecodable")

    async def after_a_wait() -> None:
        await asyncio.sleep(0.01)
        raise ValueError("refused later")

    with pytest.raises(ValueError, match="undecodable"):
        await consumer.wait_first(at_once(), consumer.suspend_flow.wait())
    with pytest.raises(ValueError, match="refused later"):
        await consumer.wait_first(after_a_wait(), consumer.suspend_flow.wait())


async def test_the_worker_consumer_fetches_with_the_configured_sizes(tmp_path: Path) -> None:
    """Faust hard-codes the worker consumer's fetch wait (1,500 ms) and leaves min bytes at 1;
    AIRGRID_CONSUMER_FETCH_MIN_BYTES / _MAX_WAIT_MS reach aiokafka's consumer, and the defaults
    are Faust's."""
    tuned = create_app(
        load_settings(
            store="memory", data_dir=tmp_path, consumer_fetch_min_bytes=65536, consumer_fetch_max_wait_ms=20
        )
    )
    client = tuned.consumer._thread._create_consumer(asyncio.get_running_loop())
    assert (client._fetch_min_bytes, client._fetch_max_wait_ms) == (65536, 20)
    plain = create_app(load_settings(store="memory", data_dir=tmp_path / "plain"))
    client = plain.consumer._thread._create_consumer(asyncio.get_running_loop())
    assert (client._fetch_min_bytes, client._fetch_max_wait_ms) == (1, 1500)
