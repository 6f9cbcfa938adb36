"""The Kafka commands of ``airgrid`` on the real broker: ``topics``, ``watch --to-end`` (issue 15:
watch had no way to stop at the end of the topics, like ``kcat -e``) and ``kafka check``."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from airgrid.kafka.local import free_port
from tests.helpers import airgrid_cli as airgrid
from tests.helpers import clean_env, produce, worker_env

pytestmark = [pytest.mark.kafka]

ALARM = {
    "kind": "opened",
    "station_id": "ST001",
    "rule_id": "pm25_1h_exceedance",
    "pollutant": "pm25",
    "value": 111.4,
    "threshold": 75.0,
    "window_start": "2026-11-27T05:00:00+00:00",
    "severity": "major",
}
DISPATCHED = {
    "type": "dispatched",
    "task_id": "T-ST001-202611270500",
    "version": 1,
    "grid_id": "L3-010102",
    "level": 3,
    "state": "dispatched",
    "deadline_at": "2026-11-28T05:00:00+00:00",
}


async def test_watch_to_end_prints_what_the_topics_hold_and_exits(
    kafka_bootstrap: str, uid: str, tmp_path: Path
) -> None:
    env = worker_env(kafka_bootstrap, uid, tmp_path / "state")
    prefix = env["AIRGRID_TOPIC_PREFIX"]
    made = airgrid(env, "topics")
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("created: ") and f"{prefix}alarms" in made.stdout
    again = airgrid(env, "topics")
    assert again.stdout == "created: nothing, all topics exist\n"

    empty = airgrid(env, "watch", "--to-end", "--from-beginning")
    assert (empty.returncode, empty.stdout, empty.stderr) == (0, "", "")
    await produce(kafka_bootstrap, f"{prefix}alarms", [(b"ST001", orjson.dumps(ALARM))])
    await produce(kafka_bootstrap, f"{prefix}task-events", [(b"ST001", orjson.dumps(DISPATCHED))])

    began = time.monotonic()
    done = airgrid(env, "watch", "--from-beginning", "-e")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout
    assert sorted(line.split(" ", 1)[1].split()[0] for line in lines) == ["ALARM", "TASK"]
    assert any("ST001  pm25_1h_exceedance: pm25 111.4 (limit 75.0)" in line for line in lines)
    assert any("TASK  dispatched T-ST001-202611270500 v1 grid L3-010102" in line for line in lines)
    assert time.monotonic() - began < 60
    # each line starts with when Kafka got the message, not when it is printed (a trial read 84
    # replayed lines all stamped with the same second)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        written = datetime(2026, 11, 27, 5, 10, 7, tzinfo=UTC)
        ack = await producer.send(
            f"{prefix}alarms", orjson.dumps(ALARM), key=b"ST002", timestamp_ms=int(written.timestamp() * 1000)
        )
        await ack
    finally:
        await producer.stop()
    history = airgrid(env, "watch", "--from-beginning", "-e")
    shanghai = written.astimezone(ZoneInfo("Asia/Shanghai"))
    assert f"{shanghai:%m-%d %H:%M:%S} ALARM" in history.stdout, history.stdout
    latest = airgrid(env, "watch", "--to-end")  # from the end: nothing to show, done at once
    assert (latest.returncode, latest.stdout) == (0, "")
    limited = airgrid(env, "watch", "--from-beginning", "--to-end", "--limit", "1")
    assert limited.returncode == 0 and len(limited.stdout.splitlines()) == 1


def test_kafka_check(kafka_bootstrap: str) -> None:
    env = clean_env()
    up = airgrid(env, "kafka", "check", "--bootstrap", kafka_bootstrap)
    assert (up.returncode, up.stdout) == (0, f"Kafka answers on {kafka_bootstrap}\n")
    closed = f"127.0.0.1:{free_port()}"
    down = airgrid(env, "kafka", "check", "--bootstrap", closed, "--timeout", "1")
    assert (down.returncode, down.stdout) == (1, f"Kafka does not answer on {closed}\n")
