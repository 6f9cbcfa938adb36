"""The sink runner on the real broker, with the in-memory sink: its own consumer group, batches,
a failing write retried with backoff, offsets committed only after a write."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from airgrid.config.settings import Settings, load_settings
from airgrid.metrics import Metrics
from airgrid.sinks.base import SinkRunner
from airgrid.sinks.memory import MemorySink
from tests.helpers import consumer_lag, produce

pytestmark = [pytest.mark.kafka]


class Worker:
    """Runs the sink runner as the worker does, and stops it as a stopping worker would."""

    def __init__(self, sink: MemorySink, settings: Settings) -> None:
        self.stopping = False
        self.metrics = Metrics()
        self.runner = SinkRunner(sink, settings, self.metrics, stopping=lambda: self.stopping)

    async def run_until(self, done: Callable[[], bool], within: float) -> None:
        task = asyncio.create_task(self.runner.run())
        deadline = time.monotonic() + within
        try:
            while not done() and time.monotonic() < deadline:
                assert not task.done(), task.exception()
                await asyncio.sleep(0.1)
        finally:
            self.stopping = True
            await asyncio.wait_for(task, 15)


def settings_for(bootstrap: str, uid: str, data_dir: Path) -> Settings:
    return load_settings(broker=f"kafka://{bootstrap}", app_id=f"a{uid}", data_dir=data_dir)


async def test_a_failing_write_is_retried_and_offsets_follow_the_writes(
    kafka_bootstrap: str, uid: str, tmp_path: Path
) -> None:
    topic = f"t{uid}.events"
    events = [(f"k{i % 3}".encode(), orjson.dumps({"n": i})) for i in range(120)]
    await produce(kafka_bootstrap, topic, [*events, (b"k0", b"not json")])
    sink = MemorySink("memory", (topic,), fail_next=2)  # the database is away for two writes
    worker = Worker(sink, settings_for(kafka_bootstrap, uid, tmp_path))
    await worker.run_until(lambda: len(sink.rows) == 120, 30)
    assert sorted(v["n"] for v in sink.rows.values()) == list(range(120))  # type: ignore[index]
    # two failed writes, one unreadable record
    assert worker.metrics.projection_errors._value.get() == 2 + 1
    assert worker.metrics.projection_rows.labels(topic)._value.get() == 120
    lag = await consumer_lag(kafka_bootstrap, f"a{uid}-memory", topic)
    assert all(committed == end for committed, end in lag.values()), lag


async def test_nothing_is_committed_while_the_write_fails(
    kafka_bootstrap: str, uid: str, tmp_path: Path
) -> None:
    topic = f"t{uid}.events"
    await produce(kafka_bootstrap, topic, [(b"k", orjson.dumps({"n": i})) for i in range(10)])
    sink = MemorySink("memory", (topic,), fail_next=10**6)
    worker = Worker(sink, settings_for(kafka_bootstrap, uid, tmp_path))
    await worker.run_until(lambda: worker.metrics.projection_errors._value.get() >= 3, 30)
    assert sink.rows == {}
    assert await consumer_lag(kafka_bootstrap, f"a{uid}-memory", topic) == {0: (None, 10)}
