"""Hostile input at volume (issue 19, item 4): 100,000 generated hostile messages (readings and
feedback on Kafka, HJ 212 frames over TCP to the gateway) interleaved with a clean stream whose
outcome is known, against the real broker, a real ``airgrid worker`` and a real ``airgrid gateway``.

Proved: neither process crashes or restarts; the clean stream's alarms are exactly those the
auditor computes from the clean readings alone and its tasks change only by the clean feedback;
every hostile message is accounted for: sent == dead-lettered (readings.dlq, with the origin and the
code the pure validators give) + rejected (feedback.rejected, likewise) + replays the worker
recognised (``duplicate``); the gateway's frames all reach readings.dlq with a code of their class;
no refusal is ``internal``. Throughput of the worker on hostile input is measured beside clean
input in the same run (reported; asserted only to be within a factor of 10).

``AIRGRID_HOSTILE_COUNT`` (default 100,000) sets the hostile total (70 % readings, 20 % feedback,
10 % frames) and ``AIRGRID_HOSTILE_SEED`` the seed, for long runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from airgrid.config.settings import load_settings
from airgrid.models.readings import Reading
from airgrid.sim.hj212 import data_frame
from tests.helpers import Collector, Worker, read_topics, worker_env
from tests.integration.gateway_support import GatewayProcess, gateway_env
from tests.reliability.auditor import audit, expected_alarms, settle, wallclock_rules
from tests.reliability.hostile import (
    DIRECTORY,
    REPLAY,
    SHANGHAI,
    Hostile,
    Mutator,
    interleave,
    station_reading,
)
from tests.reliability.hostile_frames import FrameMutator, HostileFrame

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1200)]
TOTAL = int(os.environ.get("AIRGRID_HOSTILE_COUNT", "100000"))
SEED = int(os.environ.get("AIRGRID_HOSTILE_SEED", "20261206"))
KAFKA_STATIONS = [f"ST{i:03d}" for i in range(1, 13)]
GATEWAY_STATIONS = [f"ST{i:03d}" for i in range(13, 49)]  # the first 6, more for long runs
CLEAN_BASELINE = 4000  # clean readings alone before the hostile ones, and again after them
CLEAN_MIXED = 3000  # clean readings among the hostile ones


def clean_readings(start: datetime, n: int, offset: int = 0) -> list[tuple[bytes, bytes]]:
    """10-minute readings of KAFKA_STATIONS in time order: two polluted hours in every ten."""
    out = []
    for j in range(offset, offset + n // len(KAFKA_STATIONS)):
        at = start + timedelta(minutes=10 * (j + 1))
        for i, st in enumerate(KAFKA_STATIONS):
            hour = j // 6
            pm25 = 140.0 + i if (hour + i) % 10 < 2 else 15.0 + (j + i) % 7
            out.append((st.encode(), orjson.dumps(station_reading(st, at, pm25))))
    return out


async def blast(
    bootstrap: str, topic: str, messages: Sequence[tuple[bytes | None, bytes, Sequence[tuple[str, bytes]]]]
) -> list[tuple[int, int]]:
    """Send fast (batched, idempotent, acks=all) and return each message's (partition, offset)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_batch_size=1 << 20,
        max_request_size=4 << 20,
        request_timeout_ms=120_000,
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, key=key, value=value, headers=list(headers) or None)
            for key, value, headers in messages
        ]
        return [(md.partition, md.offset) for md in await asyncio.gather(*futures)]
    finally:
        await producer.stop()


async def until(check: Callable[[], bool], timeout: float, what: str, every: float = 0.5) -> float:
    """Poll ``check``; the seconds it took. Fails after ``timeout``."""
    began = time.monotonic()
    # the checks read metrics over HTTP: off the event loop, which keeps reading the gateway's answers
    while not await asyncio.to_thread(check):
        if time.monotonic() - began > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)
    return time.monotonic() - began


def as_message(
    item: Hostile | tuple[bytes, bytes],
) -> tuple[bytes | None, bytes, Sequence[tuple[str, bytes]]]:
    if isinstance(item, Hostile):
        return item.key, item.value, item.headers
    return item[0], item[1], ()


class Links:
    """One connection per gateway station; the answers are read and dropped as they come (a
    peer that reads none is cut off)."""

    def __init__(self) -> None:
        self.conns: list[tuple[asyncio.StreamWriter, asyncio.Task[None]]] = []

    async def open(self, port: int, n: int) -> None:
        for _ in range(n):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            self.conns.append((writer, asyncio.create_task(self._drain(reader))))

    @staticmethod
    async def _drain(reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass

    async def write(self, per_link: list[list[bytes]]) -> None:
        async def one(writer: asyncio.StreamWriter, units: list[bytes]) -> None:
            for i in range(0, len(units), 50):
                writer.write(b"".join(units[i : i + 50]))
                await writer.drain()

        await asyncio.gather(*(one(w, u) for (w, _), u in zip(self.conns, per_link, strict=True)))

    def close(self) -> None:
        for writer, drain in self.conns:
            writer.close()
            drain.cancel()


async def test_a_hundred_thousand_hostile_messages(kafka_bootstrap: str, uid: str, tmp_path: Path) -> None:
    n_readings, n_feedback = TOTAL * 7 // 10, TOTAL * 2 // 10
    n_frames = TOTAL - n_readings - n_feedback
    env = worker_env(kafka_bootstrap, uid, tmp_path / "state")
    p = env["AIRGRID_TOPIC_PREFIX"]
    worker = Worker(env, tmp_path / "worker.log")
    gateway = GatewayProcess(gateway_env(env), tmp_path / "gateway.log")
    worker.start()
    gateway.start()
    pids = (worker.proc.pid if worker.proc else 0, gateway.proc.pid if gateway.proc else 0)
    now = datetime.now(UTC)
    mutator = Mutator(SEED, now)
    rng = random.Random(SEED)
    start = (now - timedelta(days=8)).replace(minute=0, second=0, microsecond=0)
    baseline = clean_readings(start, CLEAN_BASELINE)
    rows = len(KAFKA_STATIONS)
    mixed_clean = clean_readings(start, CLEAN_MIXED, offset=CLEAN_BASELINE // rows)
    after = clean_readings(start, CLEAN_BASELINE, offset=(CLEAN_BASELINE + CLEAN_MIXED) // rows)
    figures: dict[str, Any] = {"total": TOTAL}
    began = time.monotonic()

    def handled() -> float:
        return worker.metric("airgrid_readings_total")

    try:
        async with Collector(kafka_bootstrap, [p + "alarms", p + "task-events"]) as seen:
            # 1. clean input alone: the worker's rate on it (again after the hostile input, 2b: the
            # machine is shared, and its load moves)
            t0 = time.monotonic()
            placed = await blast(kafka_bootstrap, p + "readings", [(k, v, ()) for k, v in baseline])
            home = {k.decode(): at[0] for (k, _), at in zip(baseline, placed, strict=True)}
            await until(lambda: handled() >= len(baseline), 300, "the clean baseline")
            clean_s = time.monotonic() - t0
            figures["clean_rate_before"] = len(baseline) / clean_s

            # 2. hostile readings among clean ones (replays copy clean readings sent before them)
            hostile = mutator.readings(n_readings, baseline + mixed_clean)
            stream = interleave(rng, mixed_clean, hostile)
            t0 = time.monotonic()
            offsets = await blast(kafka_bootstrap, p + "readings", [as_message(m) for _, m in stream])
            want = len(baseline) + len(stream)
            await until(lambda: handled() >= want, 600, "the hostile readings")
            mixed_s = time.monotonic() - t0
            figures["mixed_rate"] = len(stream) / mixed_s
            sent_readings = [
                (m, at) for (is_hostile, m), at in zip(stream, offsets, strict=True) if is_hostile
            ]

            # 2b. clean input alone again
            t0 = time.monotonic()
            await blast(kafka_bootstrap, p + "readings", [(k, v, ()) for k, v in after])
            want += len(after)
            await until(lambda: handled() >= want, 300, "the clean readings after the hostile ones")
            after_s = time.monotonic() - t0
            figures["clean_rate_after"] = len(after) / after_s
            figures["clean_rate"] = (len(baseline) + len(after)) / (clean_s + after_s)

            # 3. HJ 212 frames: per gateway station, clean frames alone (the gateway's clean rate),
            # then clean frames with a hostile unit after each
            frames, gw_readings = frame_streams(mutator, n_frames, now)
            gw_clean = len(gw_readings)
            n_units = sum(len(h) for _, h in frames)
            split = [len(units) - len(h) - 1 for units, h in frames]
            links = Links()
            await links.open(gateway.port, len(frames))
            try:

                def published() -> float:
                    return gateway.metric("airgrid_gateway_frames_total", cn="2051", outcome="published")

                t0 = time.monotonic()
                await links.write([units[:k] for (units, _), k in zip(frames, split, strict=True)])
                await until(lambda: published() >= sum(split), 300, "the clean frames", every=0.1)
                figures["gateway_clean_rate"] = sum(split) / (time.monotonic() - t0)
                t0 = time.monotonic()
                await links.write([units[k:] for (units, _), k in zip(frames, split, strict=True)])
                await until(
                    lambda: (
                        gateway.metric("airgrid_gateway_refused_total") >= n_units and published() >= gw_clean
                    ),
                    300,
                    "the gateway's answers and refusals",
                    every=0.1,
                )
                figures["gateway_mixed_rate"] = (gw_clean - sum(split) + n_units) / (time.monotonic() - t0)
                cut = {
                    r: gateway.metric("airgrid_gateway_disconnects_total", reason=r)
                    for r in ("refusals", "junk", "slow_reader", "idle", "error")
                }
                assert sum(cut.values()) == 0, f"the gateway cut connections: {cut}"
            finally:
                links.close()
            want += gw_clean
            await until(lambda: handled() >= want, 300, "the worker to read the gateway's readings")

            # 4. the clean outcome: alarms as the auditor computes them from the clean readings alone
            settings = load_settings()
            clean_all = [v for _, v in baseline + mixed_clean + after] + gw_readings
            expected = expected_alarms(settings, clean_all)
            ignore = wallclock_rules(settings)
            result = await settle(kafka_bootstrap, p, env["AIRGRID_APP_ID"], expected, ignore, seen, 180)
            assert result.clean, result.explain()
            dispatched = [e for e in seen.of(p + "task-events") if e["type"] == "dispatched"]
            assert dispatched, "the clean stream dispatched no task"
            tasks = {
                e["task_id"]: (e["lineage"]["l3"], e["lineage"]["l2"], e["lineage"]["l1"]) for e in dispatched
            }

            # 5. feedback: one clean acknowledgement per task among hostile feedback and forgeries
            clean_fb = [
                (
                    station.encode(),
                    orjson.dumps(
                        {
                            "schema_version": 1,
                            "feedback_id": f"fb-clean-{task_id}",
                            "task_id": task_id,
                            "worker_id": f"W-{chain[0]}-1",
                            "action": "acknowledge",
                            "at": datetime.now(UTC).isoformat(),
                        }
                    ),
                )
                for task_id, chain in sorted(tasks.items())
                for station in [task_id.split("-")[1]]
            ]
            assert all(f"W-{chain[0]}-1" in DIRECTORY.workers for chain in tasks.values())
            hostile_fb = mutator.feedback(n_feedback, clean_fb, tasks)
            fb_stream = interleave(rng, clean_fb, hostile_fb)
            t0 = time.monotonic()
            fb_offsets = await blast(kafka_bootstrap, p + "feedback", [as_message(m) for _, m in fb_stream])
            fb_replays = sum(1 for h in hostile_fb if h.kind == REPLAY)

            def feedback_done() -> bool:
                rejected = worker.metric("airgrid_dlq_total", topic="feedback")
                dup = worker.metric("airgrid_feedback_total", outcome="duplicate")
                return rejected + dup >= len(hostile_fb) and rejected >= len(hostile_fb) - fb_replays

            await until(feedback_done, 600, "the hostile feedback")
            figures["feedback_rate"] = len(fb_stream) / (time.monotonic() - t0)
            await until(
                lambda: (
                    len([e for e in seen.of(p + "task-events") if e["type"] == "acknowledged"]) >= len(tasks)
                ),
                120,
                "every clean acknowledgement",
            )
            await asyncio.sleep(2)  # anything more would show now

            # 6. the accounting
            assert worker.proc is not None and worker.proc.poll() is None, worker.tail()
            assert gateway.proc is not None and gateway.proc.poll() is None, gateway.tail()
            assert (worker.proc.pid, gateway.proc.pid) == pids  # never restarted
            assert worker.metric("airgrid_internal_errors_total") == 0
            letters = await read_topics(
                kafka_bootstrap,
                [p + "readings.dlq", p + "feedback.rejected", p + "alarms.dlq", p + "commands.dlq"],
            )
            figures |= account_readings(sent_readings, letters[p + "readings.dlq"], p, worker)
            figures |= account_frames(frames, letters[p + "readings.dlq"])
            sent_fb = [(m, at) for (h, m), at in zip(fb_stream, fb_offsets, strict=True) if h]
            figures |= account_feedback(sent_fb, letters[p + "feedback.rejected"], p, worker)
            assert letters[p + "alarms.dlq"] == [] and letters[p + "commands.dlq"] == []
            internal = [
                x
                for t in letters.values()
                for x in t
                if isinstance(x, dict) and x.get("reason_code") == "internal"
            ]
            assert internal == []

            # the tasks changed only by the clean stream: dispatched or joined, acknowledged once
            events = seen.of(p + "task-events")
            result = audit(expected, seen.of(p + "alarms"), events, ignore)
            assert result.clean, result.explain()
            types = Counter(e["type"] for e in {(e["task_id"], e["version"]): e for e in events}.values())
            assert set(types) <= {"dispatched", "alarm_joined", "acknowledged"}, types
            acks = [
                e
                for e in {(e["task_id"], e["version"]): e for e in events}.values()
                if e["type"] == "acknowledged"
            ]
            assert sorted(e["task_id"] for e in acks) == sorted(tasks)
            assert {e["feedback_id"] for e in acks} == {f"fb-clean-{t}" for t in tasks}
            # each station's state written only to its own partition of the changelog (no hostile
            # reading made a second writer of it: wrong_key)
            rows = await rows_by_partition(kafka_bootstrap, f"{env['AIRGRID_APP_ID']}-stations-changelog")
            assert all(len(parts) == 1 for parts in rows.values()), rows
            assert {st: rows[st] for st in home} == {st: {n} for st, n in home.items()}
            figures["tasks"] = len(tasks)
            figures["alarms"] = result.expected
    finally:
        figures["runtime_s"] = time.monotonic() - began
        gateway_code = gateway.stop()
        worker_code = worker.stop()
        print_figures(figures, mutator)
        (Path(os.environ.get("AIRGRID_HOSTILE_REPORT", tmp_path / "hostile.json"))).write_text(
            orjson.dumps(figures, default=dict, option=orjson.OPT_INDENT_2).decode()
        )
    assert gateway_code == 0, gateway.tail()
    assert worker_code == 0, worker.tail()
    factor = figures["mixed_rate"] / figures["clean_rate"]
    assert factor > 0.1, f"hostile input at {factor:.2f} of the clean rate"


def frame_streams(
    mutator: Mutator, n: int, now: datetime
) -> tuple[list[tuple[list[bytes], list[HostileFrame]]], list[bytes]]:
    """Per gateway station: its byte units (half as many clean frames alone, then clean frames
    each followed by a hostile unit, then a last clean frame: every hostile unit lies between two
    good frames) and its hostile units; and the readings of the clean frames, station by station."""
    # 10-minute frames: a station's clean frames span at most about 30 days of the past (more
    # stations for more frames), so that none is in the future or older than the age limit
    stations = GATEWAY_STATIONS[: min(len(GATEWAY_STATIONS), max(6, -(-n * 3 // 2 // 4000)))]
    per = -(-n // len(stations))
    clean_each = per + per // 2 + 1
    start = (now - timedelta(minutes=10 * clean_each) - timedelta(days=1)).replace(
        minute=0, second=0, microsecond=0
    )
    out = []
    readings: list[bytes] = []
    left = n
    for k, station in enumerate(stations):
        mine = min(per, left)
        left -= mine
        st = DIRECTORY.stations[station]
        mn, pw = st.mn or "", st.pw.get_secret_value() if st.pw else ""
        hostile = FrameMutator(mutator).frames(mine, [station], now - timedelta(hours=2))
        units: list[bytes] = []
        n_clean = clean_each if mine else 0
        for j in range(n_clean):
            at = start + timedelta(minutes=10 * (j + 1))
            pm25 = 120.0 + k + j % 3 if (j // 6 + k) % 12 < 2 else 20.0 + (j % 5)
            reading = Reading(
                station_id=station,
                observed_at=at,
                interval_s=600,
                values={"pm25": pm25, "pm10": round(pm25 * 1.6, 1) + j % 9},
            )
            frame = data_frame(mn, pw, reading, f"{at:%Y%m%d%H%M%S}{j % 1000:03d}", zone=SHANGHAI)
            readings.append(reading.model_dump_json().encode())
            h = j - (n_clean - 1 - mine)
            units.append(frame + (hostile[h].data if 0 <= h < mine else b""))
        out.append((units, hostile))
    return out, readings


async def rows_by_partition(bootstrap: str, topic: str) -> dict[str, set[int]]:
    """Key -> the partitions of ``topic`` that hold a row of it (a table's changelog)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: dict[str, set[int]] = {}
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, n) for n in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = {tp: end for tp, end in (await consumer.end_offsets(tps)).items() if end > 0}
        deadline = time.monotonic() + 60
        while ends and time.monotonic() < deadline:
            for tp, msgs in (await consumer.getmany(*ends, timeout_ms=500)).items():
                for msg in msgs:
                    key = (msg.key or b"").decode(errors="replace").strip('"')
                    out.setdefault(key, set()).add(tp.partition)
            ends = {tp: end for tp, end in ends.items() if await consumer.position(tp) < end}
        assert not ends, f"could not read {topic} to its end"
    finally:
        await consumer.stop()
    return out


def account_readings(
    sent: list[tuple[Hostile | tuple[bytes, bytes], tuple[int, int]]],
    dlq: list[dict[str, Any]],
    p: str,
    worker: Worker,
) -> dict[str, Any]:
    """Every hostile reading in readings.dlq with the code the validators gave it, or a replay the
    worker recognised; no clean reading there."""
    letters = {
        (d["origin"]["partition"], d["origin"]["offset"]): d
        for d in dlq
        if d.get("origin") and d["origin"]["topic"] == p + "readings"
    }
    worker_letters = [d for d in dlq if d.get("origin")]
    assert len(letters) == len(worker_letters), "a reading dead-lettered twice"
    hostile = {at: m for m, at in sent if isinstance(m, Hostile)}
    assert set(letters) <= set(hostile), "a clean reading was dead-lettered"
    wrong: list[tuple[str, str | None, str]] = []
    replays_letter = 0
    outcomes: Counter[str] = Counter()
    for at, h in hostile.items():
        letter = letters.get(at)
        if h.kind == REPLAY:
            if letter is not None:
                assert letter["reason_code"] == "too_late", letter
                replays_letter += 1
                outcomes["replay:dlq too_late"] += 1
            continue
        if letter is None or letter["reason_code"] != h.code or not letter["reason"]:
            wrong.append((h.kind, h.code, letter["reason_code"] if letter else "missing"))
        outcomes[f"{h.kind}:dlq {h.code}"] += 1
    assert wrong == [], f"{len(wrong)} hostile readings not dead-lettered as expected: {wrong[:10]}"
    replays = sum(1 for h in hostile.values() if h.kind == REPLAY)
    duplicates = worker.metric("airgrid_readings_total", outcome="duplicate")
    assert duplicates == replays - replays_letter
    assert len(hostile) == len(letters) + duplicates  # sent == dead-lettered + recognised replays
    return {
        "readings_sent": len(hostile),
        "readings_dlq": len(letters),
        "readings_duplicate": int(duplicates),
        "readings_outcomes": outcomes,
    }


def account_feedback(
    sent: list[tuple[Hostile | tuple[bytes, bytes], tuple[int, int]]],
    rejected: list[dict[str, Any]],
    p: str,
    worker: Worker,
) -> dict[str, Any]:
    letters: dict[tuple[int, int], dict[str, Any]] = {}
    for r in rejected:
        o = r.get("origin") or {}
        assert o.get("topic") == p + "feedback", r
        at = (o["partition"], o["offset"])
        assert at not in letters, f"feedback rejected twice: {r}"
        letters[at] = r
    hostile = {at: m for m, at in sent if isinstance(m, Hostile)}
    assert set(letters) <= set(hostile), "a clean feedback was rejected"
    wrong = []
    outcomes: Counter[str] = Counter()
    for at, h in hostile.items():
        letter = letters.get(at)
        if h.kind == REPLAY:
            assert letter is None, letter
            continue
        if letter is None or letter["reason_code"] != h.code or not letter["reason"]:
            wrong.append((h.kind, h.code, letter["reason_code"] if letter else "missing"))
        outcomes[f"{h.kind}:rejected {h.code}"] += 1
    assert wrong == [], f"{len(wrong)} hostile feedback not rejected as expected: {wrong[:10]}"
    replays = sum(1 for h in hostile.values() if h.kind == REPLAY)
    duplicates = worker.metric("airgrid_feedback_total", outcome="duplicate")
    assert duplicates == replays
    assert len(hostile) == len(letters) + duplicates
    return {
        "feedback_sent": len(hostile),
        "feedback_rejected": len(letters),
        "feedback_duplicate": int(duplicates),
        "feedback_outcomes": outcomes,
    }


def account_frames(
    frames: list[tuple[list[bytes], list[HostileFrame]]], dlq: list[dict[str, Any]]
) -> dict[str, Any]:
    """Every hostile frame unit is one gateway dead letter (origin none, the peer named) with a code
    of its class."""
    letters = [d for d in dlq if not d.get("origin")]
    units = [u for _, hs in frames for u in hs]
    assert all(d.get("peer") for d in letters)
    assert len(letters) == len(units), f"{len(letters)} gateway dead letters for {len(units)} hostile frames"
    got = Counter(d["reason_code"] for d in letters)
    allowed = set().union(*(u.codes for u in units))
    assert set(got) <= allowed, got
    # the classes with one possible code: exact counts
    exact: Counter[str] = Counter()
    for u in units:
        if len(u.codes) == 1:
            exact[next(iter(u.codes))] += 1
    for code, n in exact.items():
        if code not in ("length", "framing", "too_large"):
            assert got[code] == n, (code, got[code], n)
    return {"frames_sent": len(units), "frames_dlq": len(letters), "frames_codes": got}


def print_figures(figures: dict[str, Any], mutator: Mutator) -> None:
    lines = ["", "hostile input at volume:"]
    for k, v in figures.items():
        if isinstance(v, Counter):
            lines.append(f"  {k}:")
            lines += [f"    {name}: {n}" for name, n in sorted(v.items())]
        elif isinstance(v, float):
            lines.append(f"  {k}: {v:.1f}")
        else:
            lines.append(f"  {k}: {v}")
    if "clean_rate" in figures and "mixed_rate" in figures:
        lines.append(
            f"  hostile/clean throughput factor: {figures['mixed_rate'] / figures['clean_rate']:.2f}"
        )
    lines.append(f"  generated by class: {dict(sorted(mutator.stats.by_kind.items()))}")
    lines.append(f"  mutants redrawn (the validators would accept them): {mutator.stats.redrawn}")
    print("\n".join(lines))
