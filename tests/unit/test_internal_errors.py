"""Errors that are not about the message: retried, held for a re-read, or the worker stops; never
acknowledged away (issue 18). Faust's own consumer and the Retrier, without a broker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from faust.types.tuples import TP

from airgrid.config.settings import load_settings
from airgrid.kafka.topics import TABLES, changelog_topics
from airgrid.metrics import Metrics
from airgrid.patches import Consumer
from airgrid.patches.table_guard import TableGuard
from airgrid.worker.binding import create_app
from airgrid.worker.retry import Retrier, WorkerStopped


class Message:
    def __init__(self, tp: TP, offset: int) -> None:
        self.tp, self.topic, self.partition, self.offset = tp, tp.topic, tp.partition, offset
        self.acked = False
        self.refcount = 1


class Event:
    def __init__(self, message: Message) -> None:
        self.message = message


class FakeFlow:
    def __init__(self) -> None:
        self.active = True

    def is_active(self) -> bool:
        return self.active


class FakeApp:
    def __init__(self) -> None:
        self.rebalancing = False
        self.should_stop = False
        self.flow_control = FakeFlow()
        self.held: list[Message] = []
        self.crashed: list[BaseException] = []
        self.consumer = self

    def hold(self, message: Message) -> None:
        self.held.append(message)

    async def crash(self, reason: BaseException) -> None:
        self.crashed.append(reason)


def errors(metrics: Metrics, stage: str) -> float:
    return metrics.internal_errors.labels(stage)._value.get()


async def test_an_internal_error_is_retried_until_it_passes_and_counted() -> None:
    app, metrics = FakeApp(), Metrics()
    calls = []

    async def handle() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("table not ready")

    retrier = Retrier(app, metrics, first_backoff_s=0.01)
    assert await retrier.run("owner", Event(Message(TP("alarms", 0), 5)), handle)
    assert len(calls) == 3 and errors(metrics, "owner") == 2 and app.held == [] and app.crashed == []


async def test_a_rebalance_during_the_retries_holds_the_message_for_a_re_read() -> None:
    app, metrics = FakeApp(), Metrics()
    msg = Message(TP("alarms", 0), 5)

    async def handle() -> None:
        app.rebalancing = True  # the guard asked for a rejoin meanwhile
        raise RuntimeError("PartitionsMismatch")

    assert not await Retrier(app, metrics, first_backoff_s=0.01).run("owner", Event(msg), handle)
    assert app.held == [msg] and app.crashed == []


async def test_an_error_that_outlives_its_retries_stops_the_worker_with_the_message_held() -> None:
    app, metrics = FakeApp(), Metrics()
    msg = Message(TP("feedback", 1), 9)

    async def handle() -> None:
        raise OSError("broker away")

    retrier = Retrier(app, metrics, give_up_s=0.05, first_backoff_s=0.01, max_backoff_s=0.02)
    assert not await retrier.run("feedback", Event(msg), handle)
    assert app.held == [msg]
    assert len(app.crashed) == 1 and isinstance(app.crashed[0], WorkerStopped)
    assert "feedback/1@9" in str(app.crashed[0])


async def test_a_cancelled_handler_holds_its_message() -> None:
    app, metrics = FakeApp(), Metrics()
    msg = Message(TP("readings", 2), 0)

    async def handle() -> None:
        await asyncio.sleep(10)

    task = asyncio.create_task(Retrier(app, metrics).run("ingest", Event(msg), handle))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert app.held == [msg]


def consumer_of(tmp_path: Path) -> Consumer:
    app = create_app(load_settings(store="memory", data_dir=tmp_path))
    consumer = app.consumer
    assert isinstance(consumer, Consumer)
    return consumer


def test_no_commit_passes_a_held_message_and_the_stream_cannot_acknowledge_it(tmp_path: Path) -> None:
    consumer = consumer_of(tmp_path)
    tp = TP("alarms", 3)
    held = Message(tp, 0)
    consumer._unacked_messages.add(held)
    consumer.hold(held)
    # both of Faust's stream iterators skip a message already marked acknowledged
    assert held.acked and held not in consumer._unacked_messages
    assert not consumer.ack(held)
    for offset in (1, 2, 3):
        consumer._acked[tp].append(offset)
        consumer._acked_index[tp].add(offset)
    # never committed, a hole at the head: Faust alone would commit 4, passing offset 0
    assert consumer._new_offset(tp) is None
    assert consumer._acked[tp] == [1, 2, 3]
    other = TP("alarms", 1)
    consumer._committed_offset[other] = 10
    consumer.hold(Message(other, 12))
    for offset in (10, 11, 13, 14):
        consumer._acked[other].append(offset)
        consumer._acked_index[other].add(offset)
    assert consumer._new_offset(other) == 12  # up to the held message, not past it
    assert consumer._acked[other] == [13, 14]


async def test_after_a_rebalance_never_committed_partitions_are_read_from_the_beginning(
    tmp_path: Path,
) -> None:
    """aiokafka seeks only partitions committed above 0; the others kept their position, past
    what was fetched and not processed: those messages were never read again."""
    consumer = consumer_of(tmp_path)
    fresh, committed, changelog = TP("t.alarms", 0), TP("t.alarms", 1), TP("app-tasks-changelog", 0)
    consumer.app.topics._acking_topics = {"t.alarms"}  # what Faust's conductor knows of its topics
    seen: list[Any] = []

    class Thread:
        async def seek_to_committed(self) -> dict[TP, int | None]:
            return {fresh: None, committed: 42, changelog: None}

        async def seek_to_beginning(self, *tps: Any) -> None:
            seen.extend((tp.topic, tp.partition) for tp in tps)

    consumer._thread = Thread()  # type: ignore[assignment]
    consumer.assignment = lambda: {fresh, committed, changelog}  # type: ignore[method-assign]
    consumer._held[fresh] = {3}
    consumer._read_offset[fresh] = 7
    await consumer.perform_seek()
    assert seen == [("t.alarms", 0)]  # not the committed one, not a table changelog
    assert consumer._read_offset[fresh] is None and consumer._read_offset[committed] == 42
    assert consumer._held == {}


def test_the_catalogue_names_every_table_changelog_of_the_app(tmp_path: Path) -> None:
    settings = load_settings(store="memory", data_dir=tmp_path, app_id="city")
    app = create_app(settings)
    assert sorted(app.tables) == sorted(TABLES)
    assert sorted(t.changelog_topic_name for t in app.tables.values()) == sorted(changelog_topics(settings))


class Thread:
    def __init__(self, counts: dict[str, int], assigned: set[TP]) -> None:
        self.counts, self.assigned = counts, assigned
        self._consumer = object()
        self.cast: list[str] = []

    def topic_partitions(self, topic: str) -> int | None:
        return self.counts.get(topic)

    def assignment(self) -> set[TP]:
        return self.assigned

    async def cast_thread(self, fun: Any, *args: Any) -> None:
        self.cast.append(fun.__name__)


async def test_the_guard_names_unusable_tables_and_asks_for_fresh_metadata(tmp_path: Path) -> None:
    settings = load_settings(store="memory", data_dir=tmp_path, app_id="city", topic_prefix="p.")
    app = create_app(settings)
    metrics = Metrics()
    tasks, stations = "city-tasks-changelog", "city-stations-changelog"
    sources = {"tasks": ("p.alarms",), "station-open-task": ("p.alarms",), "stations": ("p.readings",)}
    guard = TableGuard(app, sources, 4, metrics, refresh_every_s=1.0, rejoin_every_s=5.0)
    counts = {tasks: 0, stations: 4, "city-station-open-task-changelog": 4}
    assigned = {TP("p.alarms", 1), TP("p.readings", 1), TP(stations, 1)}
    assigned |= {TP("city-station-open-task-changelog", 1)}
    thread = Thread(counts, assigned)
    app._consumer = type("C", (), {"_thread": thread})()
    found = await guard.check(now=100.0)
    assert set(found) == {"tasks"} and "0 partitions" in found["tasks"]
    assert metrics.tables_unusable._value.get() == 1
    await guard.check(now=100.5)  # refreshes at most once a second
    assert thread.cast == ["_refresh_metadata"]
    counts[tasks] = 4  # the metadata shows it now, but the assignment has no partition of it
    found = await guard.check(now=102.0)
    assert found == {"tasks": f"changelog {tasks} partitions [1] not assigned"}
    assert thread.cast == ["_refresh_metadata", "_request_rejoin"]
    assigned.add(TP(tasks, 1))
    assert await guard.check(now=103.0) == {} and metrics.tables_unusable._value.get() == 0
    counts.clear()  # a member that is not the leader keeps no snapshot: only its assignment counts
    assert await guard.check(now=110.0) == {}
