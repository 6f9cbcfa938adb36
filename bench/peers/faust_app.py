"""The peers' job as an idiomatic Faust app: one agent, one changelogged table, alarms to a topic.

Run by ``bench.run`` as a subprocess. Environment: BENCH_BOOTSTRAP, BENCH_TOPIC (the readings),
BENCH_ALARMS (the output topic), BENCH_N, BENCH_OUT (the result file, written once N readings were
processed), BENCH_PARTITIONS, BENCH_DATADIR, BENCH_APP_ID; BENCH_MODE ``plain`` (one event at a
time, ``stream.events()``) or ``batched`` (``stream.take_events(BENCH_TAKE, BENCH_TAKE_WITHIN)``).

The table uses the memory store (as the no-op agent's table variant does) and raw keys: the
station's message key. In the batched app the events were buffered by another task, so there is no
``current_event()`` while a batch is processed and Faust refuses a table write ("Cannot modify
table key from outside of stream iteration") unless the table picks changelog partitions with
the producer's partitioner (``use_partitioner=True``): the raw key then hashes to the partition
it was read from (the bench checks that every station's changelog records are on it).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import faust

from bench.peers import job


def exit_on_crash(body: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    """A crashed agent leaves Faust's worker running, and the bench waiting for a result."""

    async def agent(stream: Any) -> None:
        try:
            await body(stream)
        except Exception:
            logging.getLogger(__name__).exception("the bench peer's agent crashed")
            os._exit(1)

    return agent


def build() -> faust.App:
    env = os.environ
    tally = job.Tally(int(env["BENCH_N"]), env["BENCH_OUT"])
    batched = env.get("BENCH_MODE", "plain") == "batched"
    take = int(env.get("BENCH_TAKE", "1000"))
    within = float(env.get("BENCH_TAKE_WITHIN", "0.5"))
    app = faust.App(
        env["BENCH_APP_ID"],
        broker=f"kafka://{env['BENCH_BOOTSTRAP']}",
        store="memory://",
        datadir=env["BENCH_DATADIR"],
        topic_partitions=int(env["BENCH_PARTITIONS"]),
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        autodiscover=False,
    )
    readings = app.topic(env["BENCH_TOPIC"], key_serializer="raw", value_serializer="raw")
    alarms = app.topic(env["BENCH_ALARMS"], key_serializer="raw", value_serializer="raw")
    table = app.Table(
        "peer-state",
        default=None,
        key_type=bytes,  # raw keys: the readings' message keys, unchanged
        use_partitioner=batched,
    )

    async def one(key: bytes, value: bytes) -> None:
        new, alarm = job.process(table.get(key), value)
        if new is not None:
            table[key] = new
        if alarm is not None:
            await alarms.send(key=key, value=alarm)
        tally.add(new, alarm)

    async def plain(stream: Any) -> None:
        async for event in stream.events():
            await one(event.key, event.value)
            tally.finish_if_done()

    async def in_batches(stream: Any) -> None:
        async for events in stream.take_events(take, within=within):
            for event in events:
                await one(event.key, event.value)
            tally.finish_if_done()

    app.agent(readings, name="bench.peer", concurrency=1)(exit_on_crash(in_batches if batched else plain))
    return app


if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker", "-l", "warn"]
    build().main()
