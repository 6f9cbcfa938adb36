"""The producer the worker commits behind: it remembers every changelog write until Kafka has it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from faust.types.tuples import FutureMessage, PendingMessage

from airgrid.config.settings import load_settings
from airgrid.streams.app import create_app
from airgrid.streams.durable import TrackingProducer, acknowledged


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
    flushed: list[int] = []

    async def flush() -> None:
        flushed.append(1)

    producer.flush = flush  # type: ignore[method-assign]  # the client is not started here
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
    assert await producer.drain(0.05) and flushed
