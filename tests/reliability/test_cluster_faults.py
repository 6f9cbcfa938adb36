"""Faults of a three-broker cluster (replication 3, ``min.insync.replicas=2``) while readings,
feedback and deadlines flow through two workers: kill -9 the leader of ``readings``, kill -9 the
leader of a table's changelog, kill -9 the active controller, SIGSTOP the group coordinator past
every session timeout and let it come back, restart all three brokers one by one; a worker is
killed -9 during each. The auditor then finds no alarm lost or contradicted, no task event lost
or changed, no deadline step and no feedback applied twice, every refused reading and feedback
in its dead-letter topic (none for an internal error), the SQL projection complete; and the
table printed gives each fault's recovery time: from the fault until the first reading written
after it is processed and committed on every partition.

``AIRGRID_TEST_CLUSTER_ROUNDS`` (default 1) repeats the five faults for a longer campaign;
``AIRGRID_TEST_CLUSTER_KILL_WORKERS=0`` injects the broker faults alone."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airgrid.kafka.cluster import LocalKafkaCluster
from airgrid.kafka.topics import TABLES
from tests.helpers import Collector, Worker, short_policy
from tests.reliability.cluster_audit import final_audit
from tests.reliability.cluster_probe import TOPICS, ClusterProbe, Feeder, cluster_worker

ROUNDS = int(os.environ.get("AIRGRID_TEST_CLUSTER_ROUNDS", "1"))
# 0: the broker faults alone, to tell their recovery from that of the worker killed with them
KILL_WORKERS = os.environ.get("AIRGRID_TEST_CLUSTER_KILL_WORKERS", "1") != "0"
pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.timeout(600 + 400 * ROUNDS)]
STATIONS = [f"ST{i:03d}" for i in range(1, 13)]
DOWN_S = 6.0  # a killed broker is restarted after this (its session, 3 s, has expired by then)
STALL_S = 10.0  # past the broker's session (3 s) and the workers' (6 s)
KILL_WORKER_AFTER_S = 1.5


@dataclass
class Row:
    """One fault kind: how often it was injected and how long each took to recover."""

    fault: str
    recovery_s: list[float] = field(default_factory=list)
    worker_restart_s: list[float] = field(default_factory=list)

    def line(self) -> str:
        rec = ", ".join(f"{r:.1f}" for r in self.recovery_s)
        restart = ", ".join(f"{r:.1f}" for r in self.worker_restart_s)
        return f"| {self.fault} | {len(self.recovery_s)} | {rec} | {restart} |"


@dataclass
class Campaign:
    """The workers, the cluster and the probes of one run."""

    cluster: LocalKafkaCluster
    probe: ClusterProbe
    workers: list[Worker]
    topics: list[str]
    readings: str
    crashed: int = 0
    kills: int = 0
    rows: dict[str, Row] = field(default_factory=dict)

    def worker_to_kill(self) -> Worker:
        worker = self.workers[self.kills % len(self.workers)]
        self.kills += 1
        return worker

    async def kill_worker(self, worker: Worker) -> asyncio.Task[float]:
        """SIGKILL ``worker`` and start it again; the task ends once it is healthy."""
        assert worker.proc is not None
        if worker.proc.poll() is not None:
            self.crashed += 1  # it exited by itself
        worker.kill()
        return asyncio.create_task(asyncio.to_thread(worker.start, 240))

    async def fault(
        self,
        kind: str,
        inject: Callable[[], Awaitable[None]],
        heal: Callable[[], Awaitable[None]],
        heal_after: float,
    ) -> None:
        """Inject a broker fault, kill a worker during it, heal it; record the recovery."""
        past = await self.probe.end_offsets(self.readings)
        began = time.monotonic()
        await inject()
        progress = asyncio.create_task(self.probe.wait_progress(self.readings, past))
        await asyncio.sleep(KILL_WORKER_AFTER_S)
        restarted = await self.kill_worker(self.worker_to_kill()) if KILL_WORKERS else None
        await asyncio.sleep(max(0.0, began + heal_after - time.monotonic()))
        await heal()
        row = self.rows.setdefault(kind, Row(kind))
        row.recovery_s.append(await progress - began)
        if restarted is not None:
            row.worker_restart_s.append(await restarted)
        await self.probe.wait_in_sync(self.topics)

    async def kill_node(self, kind: str, node_id: int) -> None:
        node = self.cluster.node(node_id)

        async def inject() -> None:
            node.kill()

        async def heal() -> None:
            await asyncio.to_thread(node.start, 120)

        await self.fault(kind, inject, heal, DOWN_S)

    async def stall_node(self, kind: str, node_id: int) -> None:
        node = self.cluster.node(node_id)

        async def inject() -> None:
            node.pause()

        async def heal() -> None:
            node.resume()

        await self.fault(kind, inject, heal, STALL_S)

    async def rolling_restart(self, kind: str) -> None:
        """Each broker stopped cleanly (its leaders move first) and started again, one at a
        time once every replica is back in sync; a worker killed while the second is down."""
        began = time.monotonic()
        restarted: asyncio.Task[float] | None = None
        row = self.rows.setdefault(kind, Row(kind))
        slowest = 0.0
        for n, node in enumerate(self.cluster.nodes.values()):
            past = await self.probe.end_offsets(self.readings)
            stopped = time.monotonic()
            progress = asyncio.create_task(self.probe.wait_progress(self.readings, past))
            await asyncio.to_thread(node.stop)
            if n == 1 and KILL_WORKERS:
                restarted = await self.kill_worker(self.worker_to_kill())
            await asyncio.to_thread(node.start, 120)
            slowest = max(slowest, await progress - stopped)
            await self.probe.wait_in_sync(self.topics)
        row.recovery_s.append(slowest)
        if restarted is not None:
            row.worker_restart_s.append(await restarted)
        print(f"\nrolling restart of 3 brokers: {time.monotonic() - began:.1f} s in all")


async def test_cluster_faults_lose_nothing(
    kafka_cluster: LocalKafkaCluster, uid: str, tmp_path: Path
) -> None:
    cluster = kafka_cluster
    policy = short_policy(tmp_path / "p.toml", 6, 3, 3)

    workers = [cluster_worker(cluster, uid, tmp_path / name, policy) for name in ("w1", "w2")]
    p, app = workers[0].env["AIRGRID_TOPIC_PREFIX"], workers[0].env["AIRGRID_APP_ID"]
    changelogs = [f"{app}-{t}-changelog" for t in TABLES]
    topics = [p + t for t in TOPICS] + changelogs
    await asyncio.gather(*(asyncio.to_thread(w.start, 240) for w in workers))
    start = (datetime.now(UTC) - timedelta(hours=300)).replace(minute=0, second=0, microsecond=0)
    exited: list[Worker] = []
    try:
        async with (
            Collector(cluster.bootstrap, [p + "alarms", p + "task-events"]) as seen,
            ClusterProbe(cluster, app) as probe,
        ):
            feeder = Feeder(cluster.bootstrap, p, STATIONS, start, seen, lambda: datetime.now(UTC))
            feeding = asyncio.create_task(feeder.run())
            run = Campaign(cluster, probe, workers, topics, p + "readings")
            await probe.wait_in_sync(topics)
            await asyncio.sleep(8)  # tasks dispatched, feedback and deadlines under way
            for r in range(ROUNDS):
                assert not feeding.done(), feeding
                await run.kill_node("kill -9 leader of readings", await probe.leader(p + "readings"))
                changelog = changelogs[r % len(changelogs)]
                await run.kill_node("kill -9 leader of a changelog", await probe.leader(changelog, r % 4))
                await run.kill_node("kill -9 active controller", probe.controller())
                await run.stall_node("SIGSTOP group coordinator 10 s", await probe.coordinator())
                await run.rolling_restart("rolling restart of 3 brokers")
            await asyncio.sleep(4)
            feeder.stop()
            await feeding
            report = await final_audit(cluster.bootstrap, p, feeder, workers)
    finally:
        exited = [w for w in workers if w.proc is not None and w.proc.poll() is not None]
        for w in workers:
            if w.proc is not None and w.proc.poll() is None:
                w.stop(60)
        for node in cluster.nodes.values():  # the cluster is the session's: leave it whole
            if node.is_running():
                node.resume()
            else:
                node.start(120)
    crashed = run.crashed + len(exited)
    print("\n| fault | tried | recovery s | killed worker healthy again s |\n|---|---|---|---|")
    print("\n".join(row.line() for row in run.rows.values()))
    print(f"worker kills {run.kills}, crashed {crashed}; {report}")
    assert crashed == 0, [w.tail() for w in exited]
    assert not report["problems"], report["problems"]
