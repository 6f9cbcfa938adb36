"""The sink interface, and the one runner every sink is driven by.

A sink writes what airgrid's topics hold somewhere else (the SQL projection is the first): it says
which topics it reads, sets itself up (migrations), and writes a batch of records in one blocking,
idempotent call. The runner does the rest, the same for every sink: its own Kafka consumer in its
own group (``<app id>-<sink name>``, so a slow database never holds up the processing group's
rebalances), a batch filled for a moment, the write in a thread with capped exponential backoff,
and the offsets committed only after the write (nothing unwritten is ever committed; a batch read
twice changes nothing). ``airgrid replay`` drives a sink through the same ``write``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from airgrid.config.settings import Settings
from airgrid.kafka.client import kafka_client_options
from airgrid.metrics import Metrics

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 30.0


class Record(Protocol):
    """A Kafka record as the consumer returns it."""

    topic: str
    partition: int
    offset: int
    value: bytes | None


@dataclass
class Written:
    """What one write did: new rows (0 for a replay), records by kind, records it could not read."""

    rows: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    unreadable: int = 0


class Sink(Protocol):
    """Something the runner writes records into."""

    name: str  # its consumer group is ``<app id>-<name>``

    def topics(self) -> tuple[str, ...]:
        """The full names of the topics it reads."""
        ...

    def setup(self) -> None:
        """Blocking, before the first write (a migration); retried until it succeeds."""
        ...

    def write(self, records: Sequence[Record]) -> Written:
        """Blocking and idempotent: writing the same records again changes nothing."""
        ...


class SinkRunner:
    """Drives one sink (see the module's docstring)."""

    def __init__(
        self,
        sink: Sink,
        settings: Settings,
        metrics: Metrics,
        stopping: Callable[[], bool] = lambda: False,
        attempts: int | None = None,
    ) -> None:
        self.sink = sink
        self.settings = settings
        self.m = metrics
        self.stopping = stopping  # True once the worker is stopping: give up retrying
        self.attempts = attempts  # a command gives up (the error raised) after so many; a worker never

    async def setup(self) -> bool:
        """Set the sink up, retrying; False if the worker stopped first."""
        return await self.retrying("setup", self.sink.setup)

    async def write(self, records: Sequence[Record]) -> Written | None:
        """Write records, retrying until it succeeds; None if the worker stopped first."""
        started = time.perf_counter()
        result: list[Written] = []
        if not await self.retrying("write", lambda: result.append(self.sink.write(records))):
            return None
        written = result[0]
        self.m.projection_seconds.observe(time.perf_counter() - started)
        for kind, n in written.kinds.items():
            self.m.projection_rows.labels(kind).inc(n)
        if written.unreadable:
            self.m.projection_errors.inc(written.unreadable)
        return written

    async def retrying(self, what: str, fn: Callable[[], Any]) -> bool:
        """Run ``fn`` in a thread until it succeeds (True), or the worker stops (False); after
        ``attempts`` failures the last error is raised."""
        backoff = 0.5
        failed = 0
        while True:
            try:
                await asyncio.to_thread(fn)
                return True
            except Exception as exc:
                failed += 1
                if self.attempts is not None and failed >= self.attempts:
                    raise
                self.m.projection_errors.inc()
                log.error("%s %s failed (retry in %.1fs): %s", self.sink.name, what, backoff, exc)
                if not await self.pause(backoff):
                    return False
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def pause(self, seconds: float) -> bool:
        """Sleep, but give up (False) as soon as the worker is stopping."""
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            if self.stopping():
                return False
            await asyncio.sleep(min(0.2, until - time.monotonic()))
        return not self.stopping()

    async def run(self) -> None:
        """Consume, write, commit, until the worker stops."""
        s = self.settings
        if not await self.setup():
            return
        consumer = AIOKafkaConsumer(
            *self.sink.topics(),
            group_id=f"{s.app_id}-{self.sink.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=5000,  # topics the worker is creating right now show up soon
            session_timeout_ms=int(s.session_timeout_seconds * 1000),
            heartbeat_interval_ms=int(min(3.0, s.session_timeout_seconds / 3) * 1000),
            **kafka_client_options(s),
        )
        await consumer.start()
        within_ms = int(s.projection_within_seconds * 1000)
        try:
            while not self.stopping():
                got = await fill(consumer, within_ms, s.projection_batch)
                records = [r for part in got.values() for r in part]
                if records:
                    if await self.write(records) is None:
                        return  # stopping: nothing committed, the next worker reads them again
                    offsets = {tp: part[-1].offset + 1 for tp, part in got.items() if part}
                    try:
                        await consumer.commit(offsets)
                    except KafkaError as exc:  # a rebalance (CommitFailedError): re-read, idempotent
                        log.warning(
                            "%s commit failed (the batch will be read again): %s", self.sink.name, exc
                        )
                backlog = 0
                for tp in consumer.assignment():
                    high = consumer.highwater(tp)  # known once a fetch for tp has returned
                    if high is not None:
                        backlog += max(0, high - await consumer.position(tp))
                self.m.projection_lag.set(backlog)
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()


async def fill(consumer: AIOKafkaConsumer, within_ms: int, most: int) -> dict[Any, list[Any]]:
    """Records for one write: up to ``most``, read for at most ``within_ms`` after the first one
    arrives. A write costs a transaction and a commit (an fsync) whatever its size, and it runs in
    a thread that takes the GIL from the agents: a batch per fetch (a few rows each under a steady
    load) cost the event loop more than the whole ingest did."""
    got: dict[Any, list[Any]] = dict(await consumer.getmany(timeout_ms=within_ms, max_records=most))
    count = sum(map(len, got.values()))
    if not count:
        return got
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_ms / 1000
    while count < most and (left := deadline - loop.time()) > 0:
        more = await consumer.getmany(timeout_ms=max(1, int(left * 1000)), max_records=most - count)
        for tp, part in more.items():
            got.setdefault(tp, []).extend(part)
            count += len(part)
    return got
