"""Integration tests for airgrid.kafka.local: a real local Kafka broker, no mocks."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from airgrid.kafka.local import PID_FILE, KafkaStartError, LocalKafka, broker_answers, free_port

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]


def _pid_gone(pid: int) -> bool:
    """True when neither the process nor any member of its process group exists."""
    for probe in (lambda: os.kill(pid, 0), lambda: os.killpg(pid, 0)):
        try:
            probe()
        except ProcessLookupError:
            continue
        return False
    return True


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not _pid_gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


async def _produce(bootstrap: str, topic: str, *values: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str, count: int, group: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest"
    )
    await consumer.start()
    got: list[bytes] = []
    try:
        async with asyncio.timeout(60):
            while len(got) < count:
                batches = await consumer.getmany(timeout_ms=1000)
                got.extend(m.value for msgs in batches.values() for m in msgs if m.value)
    finally:
        await consumer.stop()
    return got


@pytest.fixture
def local_kafka(tmp_path: Path) -> Iterator[LocalKafka]:
    broker = LocalKafka(port=free_port(), controller_port=free_port(), data_dir=tmp_path / "kafka")
    try:
        yield broker
    finally:
        broker.close()


def test_produce_consume_then_clean_stop(local_kafka: LocalKafka) -> None:
    elapsed = local_kafka.start(timeout=120)
    assert local_kafka.is_running()
    assert elapsed < 120
    assert broker_answers(local_kafka.bootstrap, 5.0)
    pid = local_kafka.pid
    assert pid is not None
    assert (local_kafka.data_dir / PID_FILE).read_text().strip() == str(pid)

    asyncio.run(_produce(local_kafka.bootstrap, "devkafka-smoke", b"hello"))
    assert asyncio.run(_consume(local_kafka.bootstrap, "devkafka-smoke", 1, "g-smoke")) == [b"hello"]

    local_kafka.stop()
    assert not local_kafka.is_running()
    assert _wait_gone(pid), "java broker process (group) still alive after stop()"
    assert not (local_kafka.data_dir / PID_FILE).exists()
    assert not broker_answers(local_kafka.bootstrap, 1.0)


def test_restart_keeps_data_and_survives_pause_and_kill(local_kafka: LocalKafka) -> None:
    local_kafka.start(timeout=120)
    asyncio.run(_produce(local_kafka.bootstrap, "devkafka-durable", b"before-restart"))

    local_kafka.restart(timeout=120)
    got = asyncio.run(_consume(local_kafka.bootstrap, "devkafka-durable", 1, "g-restart-1"))
    assert got == [b"before-restart"]

    local_kafka.pause()
    assert not broker_answers(local_kafka.bootstrap, 1.0)  # frozen: no answer
    local_kafka.resume()
    assert broker_answers(local_kafka.bootstrap, 10.0)

    asyncio.run(_produce(local_kafka.bootstrap, "devkafka-durable", b"before-kill"))
    pid = local_kafka.pid
    assert pid is not None
    local_kafka.kill()
    assert not local_kafka.is_running()
    assert _wait_gone(pid)

    local_kafka.start(timeout=120)  # recovers from the unclean shutdown with the same data dir
    got = asyncio.run(_consume(local_kafka.bootstrap, "devkafka-durable", 2, "g-restart-2"))
    assert got == [b"before-restart", b"before-kill"]
    local_kafka.stop()
    assert _wait_gone(pid)


def test_port_taken_by_non_kafka_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = int(squatter.getsockname()[1])
        assert not broker_answers(f"127.0.0.1:{port}", 1.0)
        broker = LocalKafka(port=port, controller_port=free_port(), data_dir=tmp_path / "k")
        with pytest.raises(KafkaStartError, match="not Kafka"):
            broker.start()
        assert not broker.is_running()
