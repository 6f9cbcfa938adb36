"""Hostile input on the real broker and the real worker: random bytes, wrong types, huge
messages, NaN and infinity, ancient and far-future timestamps, unknown stations, duplicates and
replayed feedback. No crash; every bad message in its DLQ with a reason; valid traffic unaffected."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.helpers import Collector, Worker, produce, worker_env

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.timeout(300)]
SEED = 20261128


def _reading(station: str, at: datetime, **values: object) -> dict[str, object]:
    return {
        "schema_version": 1,
        "station_id": station,
        "observed_at": at.isoformat(),
        "interval_s": 600,
        "values": values or {"pm25": 20.0, "pm10": 35.0},
    }


def hostile_readings(rng: random.Random, now: datetime, n_random: int) -> list[bytes]:
    """Messages that must all be refused, each for a reason a person can act on."""
    base = _reading("ST003", now - timedelta(hours=1))
    out: list[bytes] = [rng.randbytes(rng.randint(0, 300)) for _ in range(n_random)]
    out = [b for b in out if b.strip()[:1] not in (b"{",)] + [b"{" + rng.randbytes(40)]
    mutations: list[dict[str, object]] = [
        {**base, "values": {"pm25": "high"}},
        {**base, "values": {"pm25": [1, 2]}},
        {**base, "values": {"pm25": None}},
        {**base, "values": {"radon": 3.0}},
        {**base, "values": {}},
        # (a negative value is not refused: it is the `impossible` rule's, see test_detect_rules)
        {**base, "values": {"pm25": "Infinity"}},
        {**base, "values": {"pm25": "NaN"}},
        {**base, "values": {"pm25": 1e309}},
        {**base, "observed_at": "2026-11-28T10:00:00"},  # naive: no zone
        {**base, "observed_at": (now + timedelta(days=400)).isoformat()},
        {**base, "observed_at": "1970-01-01T00:00:00+00:00"},
        {**base, "observed_at": "not a time"},
        {**base, "station_id": "ST-DOES-NOT-EXIST"},
        {**base, "station_id": 12345},
        {**base, "station_id": "x" * 500},
        {**base, "interval_s": -60},
        {**base, "schema_version": 99},
        {**base, "extra_field": True},
        {k: v for k, v in base.items() if k != "station_id"},
    ]
    out += [orjson.dumps(m) for m in mutations]
    out += [b"[]", b"null", b"42", b'"text"', b"{}", b"{not json}", b"\x00" * 10]
    out.append(orjson.dumps({**base, "comment": "x" * 200_000}))  # larger than the limit
    return out


async def test_hostile_input_lands_in_the_dlq_and_valid_traffic_flows(
    kafka_bootstrap: str, uid: str, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    env = worker_env(kafka_bootstrap, uid, tmp_path / "state")
    p = env["AIRGRID_TOPIC_PREFIX"]
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    now = datetime.now(UTC)
    hour = (now - timedelta(hours=4)).replace(minute=0, second=0, microsecond=0)
    bad = hostile_readings(rng, now, n_random=60)
    valid: list[bytes] = []
    for i in range(1, 7):  # one polluted hour at ST001, clean air at ST002
        at = hour + timedelta(minutes=10 * i)
        valid.append(orjson.dumps(_reading("ST001", at, pm25=120.0, pm10=180.0)))
        valid.append(orjson.dumps(_reading("ST002", at, pm25=20.0, pm10=30.0)))
    duplicates = valid[:4]  # the same readings again: recognised, not counted twice
    # valid readings keyed by their station (the contract); hostile ones with any key at all
    mixed: list[tuple[bytes | None, bytes]] = []
    pool = bad[:]
    rng.shuffle(pool)
    for v in valid + duplicates:
        mixed.append((orjson.loads(v)["station_id"].encode(), v))
        for _ in range(len(pool) // len(valid) + 1):
            if pool:
                mixed.append((rng.choice([None, b"ST001", rng.randbytes(8)]), pool.pop()))
    mixed += [(None, m) for m in pool]
    try:
        async with Collector(
            kafka_bootstrap, [p + "readings.dlq", p + "alarms", p + "feedback.rejected", p + "task-events"]
        ) as seen:
            await produce(kafka_bootstrap, p + "readings", mixed)
            deadline = time.monotonic() + 60
            while len(seen.of(p + "readings.dlq")) < len(bad) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            dlq = seen.of(p + "readings.dlq")
            assert len(dlq) == len(bad), f"{len(dlq)} dead letters for {len(bad)} bad messages"
            assert all(d["reason"] and d["reason_code"] != "internal" for d in dlq)
            assert {d["origin"]["topic"] for d in dlq} == {p + "readings"}
            assert len({(d["origin"]["partition"], d["origin"]["offset"]) for d in dlq}) == len(bad)
            alarm = await seen.wait_for(
                p + "alarms", lambda a: a["station_id"] == "ST001", 30, "the ST001 alarm"
            )
            assert alarm["kind"] == "opened"
            task = await seen.wait_for(
                p + "task-events", lambda e: e["type"] == "dispatched", 30, "the dispatched task"
            )

            # replayed and forged feedback: applied once, the rest refused with reasons
            fb = {
                "schema_version": 1,
                "feedback_id": "fb-once",
                "task_id": task["task_id"],
                "worker_id": f"W-{task['lineage']['l3']}-1",
                "action": "acknowledge",
                "at": datetime.now(UTC).isoformat(),
            }
            forged = {
                **fb,
                "feedback_id": "fb-forged",
                "worker_id": "W-L3-020409-1",
                "grid_id": task["lineage"]["l3"],
            }
            await produce(
                kafka_bootstrap,
                p + "feedback",
                [(b"k", orjson.dumps(fb))] * 3
                + [(b"k", orjson.dumps(forged))]
                + [(b"k", rng.randbytes(50)) for _ in range(5)],
            )
            await seen.wait_for(
                p + "task-events", lambda e: e["type"] == "acknowledged", 30, "the acknowledgement"
            )
            deadline = time.monotonic() + 30
            while len(seen.of(p + "feedback.rejected")) < 6 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)  # anything else would arrive now
            acks = [e for e in seen.of(p + "task-events") if e["type"] == "acknowledged"]
            assert len(acks) == 1
            codes = sorted(r["reason_code"] for r in seen.of(p + "feedback.rejected"))
            assert len(codes) == 6 and "internal" not in codes
            assert worker.metric("airgrid_readings_total", outcome="accepted") == len(valid)
            assert worker.metric("airgrid_readings_total", outcome="duplicate") == len(duplicates)
            assert worker.metric("airgrid_dlq_total", topic="readings") == len(bad)
            assert [a["kind"] for a in seen.of(p + "alarms") if a["station_id"] == "ST002"] == []
    finally:
        code = worker.stop()
    assert code == 0, worker.tail()


async def test_a_huge_key_is_dead_lettered_and_the_worker_goes_on(
    kafka_bootstrap: str, uid: str, tmp_path: Path
) -> None:
    """Issue 19: a message whose key fills most of what the broker takes (its value is tiny, or is
    a valid reading). The dead letter must not carry the key whole (twice: as its key and, decoded
    with replacement characters of three bytes each, in its body), or it is larger than the broker
    takes, cannot be sent, and the message stops the worker for good."""
    env = worker_env(kafka_bootstrap, uid, tmp_path / "state", AIRGRID_INTERNAL_RETRY_SECONDS="20")
    p = env["AIRGRID_TOPIC_PREFIX"]
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    rng = random.Random(SEED)
    hour = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    valid = [
        (b"ST001", orjson.dumps(_reading("ST001", hour + timedelta(minutes=10 * i), pm25=120.0, pm10=180.0)))
        for i in range(1, 7)
    ]
    huge = [
        (rng.randbytes(900_000), b"x"),
        (b"\xff" * 900_000, valid[0][1]),
        (b"ST001" * 180_000, b"{}"),
    ]
    try:
        async with Collector(
            kafka_bootstrap, [p + "readings.dlq", p + "alarms", p + "feedback.rejected"]
        ) as seen:
            producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=2_000_000)
            await producer.start()
            try:
                for key, value in [*huge, *valid]:
                    await producer.send_and_wait(p + "readings", key=key, value=value)
                await producer.send_and_wait(p + "feedback", key=b"\xfe" * 900_000, value=b"[1]")
            finally:
                await producer.stop()
            await seen.wait_for(p + "alarms", lambda a: a["station_id"] == "ST001", 60, "the ST001 alarm")
            deadline = time.monotonic() + 30
            while len(seen.of(p + "readings.dlq")) < len(huge) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            letters = seen.of(p + "readings.dlq")
            assert sorted(d["reason_code"] for d in letters) == ["invalid", "not_json", "wrong_key"]
            assert all(len(orjson.dumps(d)) < 200_000 for d in letters)
            (refused,) = [
                await seen.wait_for(p + "feedback.rejected", lambda r: True, 30, "the feedback's rejection")
            ]
            assert refused["reason_code"] == "not_object"
            assert worker.metric("airgrid_internal_errors_total") == 0
    finally:
        code = worker.stop()
    assert code == 0, worker.tail()
