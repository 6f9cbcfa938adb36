"""What the cluster fault campaign reads and writes besides the worker: the cluster's state (who
leads a partition, who leads the quorum, whether every replica is back in sync, how far the
workers' group has committed) and the traffic it feeds in (readings, a few refused ones, and
feedback on the tasks the workers dispatch). Every read is bounded and retried: a stalled broker
answers nothing, a killed one refuses, and metadata lags behind both."""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from airgrid.config.settings import DATA_DIR
from airgrid.domain.directory import Directory
from airgrid.kafka.cluster import LocalKafkaCluster
from airgrid.kafka.local import broker_count
from tests.helpers import Collector, Worker, worker_env

T = TypeVar("T")
DIRECTORY = Directory.load(DATA_DIR / "grids.json")
OFFSETS_TOPIC = "__consumer_offsets"
FINDINGS = {"source_found": True, "source_type": "construction_dust", "measures": "site watered"}
# airgrid's topics (with the prefix), whose replicas must all be back in sync after a broker fault
TOPICS = (
    "readings",
    "readings.dlq",
    "alarms",
    "alarms.dlq",
    "feedback",
    "feedback.rejected",
    "task-events",
    "warnings",
    "task-commands",
    "station-commands",
    "commands.dlq",
)
SESSION_S = 6  # the workers' group session: a killed worker's partitions move after it


def cluster_worker(cluster: LocalKafkaCluster, uid: str, data_dir: Path, policy: Path) -> Worker:
    """A worker of app ``uid`` on every broker of ``cluster``, its topics replicated on up to
    three of them, a short session, a policy in seconds and a checkpoint a second; its state in
    ``data_dir``, its log beside it."""
    env = worker_env(
        cluster.bootstrap,
        uid,
        data_dir,
        AIRGRID_BROKER="kafka://" + cluster.bootstrap.replace(",", ";"),
        AIRGRID_TOPIC_REPLICATION=str(min(3, len(cluster.nodes))),
        AIRGRID_SESSION_TIMEOUT_SECONDS=str(SESSION_S),
        AIRGRID_POLICY_FILE=str(policy),
        AIRGRID_CHECKPOINT_INTERVAL_SECONDS="1",
    )
    return Worker(env, data_dir.with_suffix(".log"))


class ClusterProbe:
    """Reads of the cluster's state, each bounded by ``step`` seconds and retried."""

    def __init__(self, cluster: LocalKafkaCluster, group: str, step: float = 6.0) -> None:
        self.cluster = cluster
        self.group = group
        self.step = step

    async def __aenter__(self) -> ClusterProbe:
        opts: dict[str, Any] = {"bootstrap_servers": self.cluster.bootstrap, "request_timeout_ms": 5000}
        self.admin = AIOKafkaAdminClient(**opts, retry_backoff_ms=200)
        self.consumer = AIOKafkaConsumer(**opts, enable_auto_commit=False, metadata_max_age_ms=1000)
        await self.admin.start()
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def retry(self, call: Callable[[], Awaitable[T]], within: float = 120.0) -> T:
        """``call()`` until it answers within ``step`` seconds; its last error after ``within``."""
        deadline = time.monotonic() + within
        while True:
            try:
                return await asyncio.wait_for(call(), self.step)
            except (KafkaError, TimeoutError, OSError, AssertionError):
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.3)

    async def _describe(self, topics: list[str]) -> dict[str, dict[int, dict[str, Any]]]:
        got = await self.admin.describe_topics(topics)
        out: dict[str, dict[int, dict[str, Any]]] = {}
        for t in got:
            assert t["error_code"] == 0, f"{t['topic']}: error {t['error_code']}"
            out[t["topic"]] = {p["partition"]: p for p in t["partitions"]}
        return out

    async def leader(self, topic: str, partition: int = 0) -> int:
        """The broker leading ``topic``'s ``partition`` now."""

        async def ask() -> int:
            part = (await self._describe([topic]))[topic][partition]
            assert part["leader"] >= 0, f"{topic}-{partition} has no leader"
            return int(part["leader"])

        return await self.retry(ask)

    async def coordinator(self) -> int:
        """The broker leading the one partition of ``__consumer_offsets``: the group coordinator."""
        return await self.leader(OFFSETS_TOPIC)

    def controller(self) -> int:
        leader = self.cluster.active_controller()
        assert leader is not None, "no node names the quorum's leader"
        return leader

    async def wait_in_sync(self, topics: list[str], within: float = 180.0) -> float:
        """Wait until every node lists every broker and every partition of ``topics`` (and of the
        offsets topic) has a leader and all its replicas in sync; return the seconds it took."""
        began = time.monotonic()
        brokers = len(self.cluster.nodes)

        async def check() -> None:
            for node in self.cluster.nodes.values():
                assert broker_count(node.bootstrap, 2) == brokers, f"node {node.bootstrap} lacks a broker"
            described = await self._describe([*topics, OFFSETS_TOPIC])
            for topic, parts in described.items():
                for p, part in parts.items():
                    assert part["leader"] >= 0 and len(part["isr"]) == brokers, f"{topic}-{p}: {part}"

        await self.retry(check, within)
        return time.monotonic() - began

    async def end_offsets(self, topic: str) -> dict[int, int]:
        async def ask() -> dict[int, int]:
            parts = (await self._describe([topic]))[topic]
            ends = await self.consumer.end_offsets([TopicPartition(topic, p) for p in parts])
            return {tp.partition: off for tp, off in ends.items()}

        return await self.retry(ask)

    async def committed(self, topic: str) -> dict[int, int]:
        async def ask() -> dict[int, int]:
            offsets = await self.admin.list_consumer_group_offsets(self.group)
            return {tp.partition: om.offset for tp, om in offsets.items() if tp.topic == topic}

        return await self.retry(ask)

    async def wait_progress(self, topic: str, past: dict[int, int], within: float = 180.0) -> float:
        """Wait until the group has committed, on every partition of ``past``, beyond the end
        offset it had then (a message written after that moment is processed and committed);
        return the ``time.monotonic()`` when that was seen."""
        deadline = time.monotonic() + within
        done: dict[int, int] = {}
        while True:
            with contextlib.suppress(KafkaError, TimeoutError, OSError, AssertionError):
                done = await self.committed(topic)
                if all(done.get(p, -1) > end for p, end in past.items()):
                    return time.monotonic()
            if time.monotonic() > deadline:
                raise AssertionError(f"no progress on {topic} within {within:.0f} s: {past} -> {done}")
            await asyncio.sleep(0.25)


def reading(station: str, at: datetime, pm25: float, m: int) -> bytes:
    return orjson.dumps(
        {
            "schema_version": 1,
            "station_id": station,
            "observed_at": at.isoformat(),
            "interval_s": 600,
            "values": {"pm25": pm25, "pm10": pm25 * 1.6 + m, "no2": 30.0 + m, "so2": 8.0, "co": 0.7},
        }
    )


def hour_of_readings(stations: list[str], start: datetime, h: int) -> list[tuple[bytes, bytes]]:
    """One event hour of 10-minute readings of every station: two polluted hours in five."""
    out = []
    for m in range(1, 7):
        at = start + timedelta(hours=h, minutes=10 * m)
        for i, st in enumerate(stations):
            pm25 = 130.0 + i if (h + i) % 5 < 2 else 18.0 + m % 3
            out.append((st.encode(), reading(st, at, pm25, m)))
    return out


def refused_readings(h: int) -> list[bytes]:
    """Readings airgrid must refuse, each carrying a marker to find its dead letter by."""
    marker = f"REFUSED-{h}"
    return [
        f"not json {marker}".encode(),
        orjson.dumps({"schema_version": 1, "station_id": f"ST-{marker}", "observed_at": "x"}),
    ]


def feedback(fid: str, task_id: str, worker: str, action: str, at: datetime) -> bytes:
    body: dict[str, Any] = {
        "schema_version": 1,
        "feedback_id": fid,
        "task_id": task_id,
        "worker_id": worker,
        "action": action,
        "at": at.isoformat(),
    }
    if action == "submit":
        body["findings"] = FINDINGS
    return orjson.dumps(body)


@dataclass
class Feeder:
    """Writes the campaign's input in order through one idempotent producer: an event hour of
    readings (and two refused ones) per ``tick``, and feedback on half of the dispatched tasks
    (acknowledge, on site, submit, and the level-2 reviewer's approval that closes the task, one
    step per tick; the station's next alarm then opens a new task) plus one feedback for a task
    that does not exist."""

    bootstrap: str
    prefix: str
    stations: list[str]
    start: datetime
    seen: Collector
    clock: Callable[[], datetime]
    tick: float = 1.0
    readings: list[bytes] = field(default_factory=list)
    refused: list[bytes] = field(default_factory=list)
    sent_feedback: dict[str, str] = field(default_factory=dict)  # feedback id -> action
    bad_feedback: list[str] = field(default_factory=list)
    hours: int = 0
    _steps: dict[str, int] = field(default_factory=dict)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=120_000,
            metadata_max_age_ms=1000,
        )
        await producer.start()
        try:
            while not self._stop.is_set():
                await self._hour(producer)
                await self._feedback(producer)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.tick)
        finally:
            await producer.stop()

    def stop(self) -> None:
        self._stop.set()

    async def _hour(self, producer: AIOKafkaProducer) -> None:
        batch = hour_of_readings(self.stations, self.start, self.hours)
        refused = refused_readings(self.hours)
        acks = [await producer.send(self.prefix + "readings", key=k, value=v) for k, v in batch]
        acks += [await producer.send(self.prefix + "readings", key=b"ST001", value=v) for v in refused]
        await asyncio.gather(*acks)  # in order, all of it, before the next hour
        self.readings += [v for _, v in batch]
        self.refused += refused
        self.hours += 1

    async def _feedback(self, producer: AIOKafkaProducer) -> None:
        actions = ("acknowledge", "on_site", "submit", "approve")
        now = self.clock()
        dispatched = {
            e["task_id"]: e["station_id"]
            for e in self.seen.of(self.prefix + "task-events")
            if e["type"] == "dispatched" and zlib.crc32(e["task_id"].encode()) % 2 == 0
        }
        out: list[tuple[bytes, bytes]] = []
        for task_id, station in dispatched.items():
            step = self._steps.get(task_id, 0)
            if step >= len(actions):
                continue
            lineage = DIRECTORY.lineage(station)
            assert lineage is not None
            fid = f"fb-{task_id}-{actions[step]}"
            worker = f"W-{lineage.l2}" if actions[step] == "approve" else f"W-{lineage.l3}-1"
            out.append((task_id.encode(), feedback(fid, task_id, worker, actions[step], now)))
            self.sent_feedback[fid] = actions[step]
            self._steps[task_id] = step + 1
        ghost = f"fb-ghost-{self.hours}"
        out.append((b"ghost", feedback(ghost, "T-ST001-199901010000", "W-L3-010102-1", "acknowledge", now)))
        self.bad_feedback.append(ghost)
        acks = [await producer.send(self.prefix + "feedback", key=k, value=v) for k, v in out]
        await asyncio.gather(*acks)
