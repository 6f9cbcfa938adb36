"""The peers' job by hand on aiokafka, no framework: what Python does without one.

A group consumer fetches a batch; per reading the job's new state goes to a compacted changelog
topic (one record per reading, on the reading's partition) and an alarm to the alarms topic; then
every send of the batch is awaited (acks=all) and only then are the offsets committed.

Run by ``bench.run`` as a subprocess. Environment: BENCH_BOOTSTRAP, BENCH_TOPIC, BENCH_ALARMS,
BENCH_CHANGELOG (created by the bench), BENCH_N, BENCH_OUT, BENCH_APP_ID (the consumer group).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.peers import job


async def run() -> None:
    env = os.environ
    tally = job.Tally(int(env["BENCH_N"]), env["BENCH_OUT"])
    changelog, alarms = env["BENCH_CHANGELOG"], env["BENCH_ALARMS"]
    consumer = AIOKafkaConsumer(
        env["BENCH_TOPIC"],
        bootstrap_servers=env["BENCH_BOOTSTRAP"],
        group_id=env["BENCH_APP_ID"],
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=env["BENCH_BOOTSTRAP"], acks="all")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await producer.start()
    await consumer.start()
    states: dict[bytes, job.State] = {}
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=2000)
            acks = []
            for tp, records in batches.items():
                for rec in records:
                    key = rec.key or b""
                    new, alarm = job.process(states.get(key), rec.value or b"")
                    if new is not None:
                        states[key] = new
                        acks.append(
                            await producer.send(changelog, orjson.dumps(new), key=key, partition=tp.partition)
                        )
                    if alarm is not None:
                        acks.append(await producer.send(alarms, alarm, key=key))
                    tally.add(new, alarm)
            if not batches:
                continue
            await asyncio.gather(*acks)
            await consumer.commit()
            tally.finish_if_done()
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(run())
