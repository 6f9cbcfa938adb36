"""Long randomised fault campaigns (issue 19, item 3): a seedable nemesis injects faults at random
while readings, feedback and deadlines flow through several workers, then the cluster audit
counts what was lost, applied twice or refused wrongly. Not part of the test suite (it runs as
long as you ask; ``test_campaign.py`` runs a short one in every test run):

    .venv/bin/python -m tests.reliability.campaign --minutes 20 --seed 7 [--brokers 1|3] [--workers 2]

Faults, chosen by ``random.Random(seed)`` (each kind once first, in a random order, then by
weight): kill -9 a worker and start it again; kill -9 a broker (on a cluster any node: the active
controller, a partition leader, the group coordinator or any) and start it after 6 s; stop a
broker cleanly and start it again (a bounce); SIGSTOP a broker past every session, then SIGCONT;
a rebalance (an extra worker joins, stays a while, leaves); a hostile burst (a few hundred
malformed readings and feedback: random bytes, wrong types, unknown stations and tasks).
Each action is printed as a JSON line with its time; the last line is the summary (counts and
recovery times per fault kind, the audit's figures and its problems). Exits 1 on any problem.

Recovery of a fault is the time from its injection until the first reading written after it is
processed and committed on every partition; the nemesis does not wait for it before the next
fault (it waits only until the fault is healed), so faults may overlap."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from airgrid.kafka.cluster import LocalKafkaCluster
from airgrid.kafka.local import DevKafkaError
from airgrid.kafka.topics import TABLES
from tests.helpers import Collector, Worker, read_topics, short_policy
from tests.reliability.cluster_audit import final_audit
from tests.reliability.cluster_probe import TOPICS, ClusterProbe, Feeder, cluster_worker

KINDS = ("worker_kill", "broker_kill", "broker_bounce", "broker_stall", "rebalance", "hostile_burst")
# tuned so that 20 minutes on the shared 2-core machine give >= 50 worker kills, >= 10 broker
# kills or bounces and >= 5 rebalances (a worker kill takes ~15 s, a broker fault ~25 s)
WEIGHTS = {
    "worker_kill": 70,
    "broker_kill": 7,
    "broker_bounce": 6,
    "broker_stall": 4,
    "rebalance": 8,
    "hostile_burst": 5,
}
STATIONS = [f"ST{i:03d}" for i in range(1, 13)]
DOWN_S = 6.0  # a killed broker is started again after this (its session, 3 s, has expired)
STALL_S = 10.0  # past the broker's session (3 s) and the workers' (6 s)
HOSTILE = re.compile(r"HOSTILE-\d+-\d+")


@dataclass
class Action:
    """One fault the nemesis injected."""

    kind: str
    t: float  # seconds since the campaign began
    at: str
    target: str
    recovery_s: float | None = None


def hostile_burst(rng: random.Random, burst: int, n: int) -> tuple[list[bytes], list[bytes]]:
    """``n`` malformed readings and ``n // 4`` malformed feedback, each with a marker to find its
    dead letter by: random bytes, wrong types, missing fields, unknown stations and tasks."""

    def marker(i: int) -> str:
        return f"HOSTILE-{burst}-{i}"

    def one(i: int, feedback: bool) -> bytes:
        m = marker(i)
        form = rng.randrange(5)
        if form == 0:
            return m.encode() + rng.randbytes(rng.randrange(1, 200))
        if form == 1:
            return orjson.dumps([m, rng.random(), None])
        if feedback:
            bodies: list[dict[str, Any]] = [
                {"schema_version": 1, "feedback_id": m, "task_id": rng.random(), "action": 7},
                {
                    "schema_version": 1,
                    "feedback_id": m,
                    "task_id": "T-ST999-209901010000",
                    "worker_id": "W-L3-999999-1",
                    "action": "acknowledge",
                    "at": "2026-01-01T00:00:00+00:00",
                },
                {"schema_version": 2, "feedback_id": m, "comment": "x" * rng.randrange(5000)},
            ]
        else:
            bodies = [
                {
                    "schema_version": 1,
                    "station_id": f"ZZ-{m}",
                    "observed_at": "2026-01-01T00:00:00+00:00",
                    "interval_s": 600,
                    "values": {"pm25": 50.0},
                },
                {
                    "schema_version": 1,
                    "station_id": rng.choice(STATIONS),
                    "observed_at": m,
                    "interval_s": "ten",
                    "values": {"pm25": "high"},
                },
                {"schema_version": "1", "station_id": [m], "values": None},
            ]
        return orjson.dumps(bodies[form - 2])

    return [one(i, False) for i in range(n)], [one(n + i, True) for i in range(n // 4)]


@dataclass
class Nemesis:
    """Chooses and injects the faults; keeps what it did and what it must audit."""

    rng: random.Random
    cluster: LocalKafkaCluster
    probe: ClusterProbe
    workers: list[Worker]
    make_worker: Callable[[str], Worker]
    topics: list[str]
    prefix: str
    began: float = field(default_factory=time.monotonic)
    actions: list[Action] = field(default_factory=list)
    extra: list[Worker] = field(default_factory=list)  # rebalance workers, for the projections
    crashed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    hostile_sent: set[str] = field(default_factory=set)
    _recoveries: list[asyncio.Task[None]] = field(default_factory=list)

    async def run(
        self,
        until: float,
        gap: tuple[float, float],
        log: Callable[[Action], None],
        kinds: tuple[str, ...] = KINDS,
    ) -> None:
        first = list(kinds)
        self.rng.shuffle(first)
        weights = [WEIGHTS[k] for k in kinds]
        while time.monotonic() < until:
            self.check_exits()
            kind = first.pop() if first else self.rng.choices(kinds, weights)[0]
            await self.act(kind, log)
            await asyncio.sleep(self.rng.uniform(*gap))
        self.check_exits()
        await asyncio.gather(*self._recoveries)

    def check_exits(self) -> None:
        """A worker that exited without being killed crashed: count it and start it again."""
        for w in self.workers:
            if w.proc is not None and w.proc.poll() is not None:
                self.crashed.append(f"{w.log_path.name} exited {w.proc.returncode}: {w.tail(20)}")
                w.start(240)

    async def act(self, kind: str, log: Callable[[Action], None]) -> None:
        past = await self.probe.end_offsets(self.prefix + "readings")
        began = time.monotonic()
        action = Action(kind, round(began - self.began, 1), datetime.now(UTC).isoformat(), "")
        faults: dict[str, Callable[[Action], Awaitable[None]]] = {
            "worker_kill": self.worker_kill,
            "broker_kill": self.broker_kill,
            "broker_bounce": self.broker_bounce,
            "broker_stall": self.broker_stall,
            "rebalance": self.rebalance,
            "hostile_burst": self.hostile,
        }
        try:
            await faults[kind](action)
        except (AssertionError, DevKafkaError) as exc:  # a worker or broker that did not come back
            self.problems.append(f"{kind} at {action.t} s: {exc}"[:2000])
        self.actions.append(action)
        log(action)
        self._recoveries.append(asyncio.create_task(self.recovered(action, past, began)))

    async def recovered(self, action: Action, past: dict[int, int], began: float) -> None:
        try:
            action.recovery_s = round(
                await self.probe.wait_progress(self.prefix + "readings", past, 300) - began, 2
            )
        except AssertionError as exc:
            self.problems.append(f"{action.kind} at {action.t} s: {exc}")

    async def worker_kill(self, action: Action) -> None:
        i = self.rng.randrange(len(self.workers))
        action.target = f"worker {i + 1}"
        self.workers[i].kill()
        await asyncio.to_thread(self.workers[i].start, 240)

    async def pick_node(self, action: Action) -> int:
        """A node to fault: the active controller, the leader of ``readings`` or of a changelog,
        the group coordinator, or any."""
        if len(self.cluster.nodes) == 1:
            action.target = "the broker"
            return 1
        role = self.rng.choice(["controller", "readings leader", "changelog leader", "coordinator", "any"])
        if role == "controller":
            node = self.probe.controller()
        elif role == "readings leader":
            node = await self.probe.leader(self.prefix + "readings", self.rng.randrange(4))
        elif role == "changelog leader":
            node = await self.probe.leader(self.rng.choice(self.topics[len(TOPICS) :]), self.rng.randrange(4))
        elif role == "coordinator":
            node = await self.probe.coordinator()
        else:
            node = self.rng.choice(list(self.cluster.nodes))
        action.target = f"node {node} ({role})"
        return node

    async def broker_kill(self, action: Action) -> None:
        node = self.cluster.node(await self.pick_node(action))
        node.kill()
        await asyncio.sleep(DOWN_S)
        await self.broker_back(node.start)

    async def broker_bounce(self, action: Action) -> None:
        node = self.cluster.node(await self.pick_node(action))
        await asyncio.to_thread(node.stop)
        await self.broker_back(node.start)

    async def broker_stall(self, action: Action) -> None:
        node = self.cluster.node(await self.pick_node(action))
        node.pause()
        await asyncio.sleep(STALL_S)
        node.resume()
        await self.probe.wait_in_sync(self.topics, 300)

    async def broker_back(self, start: Callable[[float], float]) -> None:
        """Start a broker again and wait for every replica in sync (two brokers down at once
        would take the quorum and ``min.insync.replicas`` with them)."""
        await asyncio.to_thread(start, 180)
        await self.probe.wait_in_sync(self.topics, 300)

    async def rebalance(self, action: Action) -> None:
        extra = self.make_worker(f"extra{len(self.extra) + 1}")
        self.extra.append(extra)
        action.target = extra.log_path.stem
        await asyncio.to_thread(extra.start, 240)
        await asyncio.sleep(self.rng.uniform(5, 15))
        try:
            await asyncio.to_thread(extra.stop, 90)
        except AssertionError as exc:
            self.problems.append(f"rebalance worker did not stop: {exc}"[:400])

    async def hostile(self, action: Action) -> None:
        burst = len([a for a in self.actions if a.kind == "hostile_burst"])
        readings, feedback = hostile_burst(self.rng, burst, self.rng.randrange(150, 300))
        action.target = f"{len(readings)} readings, {len(feedback)} feedback"
        producer = AIOKafkaProducer(
            bootstrap_servers=self.cluster.bootstrap,
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=120_000,
        )
        await producer.start()
        try:
            sends = [
                await producer.send(self.prefix + topic, key=self.rng.choice(STATIONS).encode(), value=v)
                for topic, batch in (("readings", readings), ("feedback", feedback))
                for v in batch
            ]
            await asyncio.gather(*sends)
        finally:
            await producer.stop()
        self.hostile_sent |= {
            m for v in readings + feedback for m in HOSTILE.findall(v.decode(errors="replace"))
        }

    def all_workers(self) -> list[Worker]:
        return [*self.workers, *self.extra]


async def hostile_not_refused(bootstrap: str, prefix: str, sent: set[str]) -> list[str]:
    """Markers of hostile messages found in neither ``readings.dlq`` nor ``feedback.rejected``."""
    got = await read_topics(bootstrap, [prefix + "readings.dlq", prefix + "feedback.rejected"])
    found = {m for letters in got.values() for x in letters for m in HOSTILE.findall(x.get("payload", ""))}
    return sorted(sent - found)


def stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": min(values), "median": round(statistics.median(values), 2), "max": max(values)}


def summary(nemesis: Nemesis, report: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
    """The campaign's figures: per fault kind how often it was tried and how long it took to
    recover; the audit's counts; every problem (none in a good run)."""
    per_kind = {
        kind: {
            "tried": len(done := [a for a in nemesis.actions if a.kind == kind]),
            "recovery_s": stats([a.recovery_s for a in done if a.recovery_s is not None]),
        }
        for kind in KINDS
    }
    problems = dict(report["problems"])
    if nemesis.crashed:
        problems["crashed"] = nemesis.crashed
    if nemesis.problems:
        problems["nemesis"] = nemesis.problems
    duplicated = ("alarms_contradicted", "task_versions_contradicted", "deadline_steps_twice")
    return {
        **args,
        "faults": per_kind,
        "lost": report["lost_alarms"] + len(problems.get("task_event_holes", [])),
        "duplicated": sum(report[k] for k in duplicated) + len(problems.get("feedback_applied_twice", [])),
        "crashed": len(nemesis.crashed),
        "audit": {k: v for k, v in report.items() if k != "problems"},
        "hostile": len(nemesis.hostile_sent),
        "problems": problems,
    }


async def campaign(
    minutes: float,
    seed: int,
    brokers: int = 1,
    workers: int = 2,
    gap: tuple[float, float] = (0.5, 2.0),
    log: Callable[[Action], None] = lambda a: None,
    kinds: tuple[str, ...] = KINDS,
) -> dict[str, Any]:
    """Run a campaign of ``minutes`` and return its summary (``problems`` empty when it passed)."""
    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="airgrid-campaign-"))
    cluster = LocalKafkaCluster(brokers, data_dir=tmp / "kafka")
    cluster.start(timeout=240)
    uid = uuid.uuid4().hex[:8]
    policy = short_policy(tmp / "p.toml", 6, 3, 3)

    def make(name: str) -> Worker:
        return cluster_worker(cluster, uid, tmp / name, policy)

    base = [make(f"w{i}") for i in range(1, workers + 1)]
    p, app = base[0].env["AIRGRID_TOPIC_PREFIX"], base[0].env["AIRGRID_APP_ID"]
    topics = [p + t for t in TOPICS] + [f"{app}-{t}-changelog" for t in TABLES]
    # one event hour of readings a second: the first readings are old enough for hours of it
    hours = int(minutes * 60 * 1.5) + 300
    start = (datetime.now(UTC) - timedelta(hours=hours)).replace(minute=0, second=0, microsecond=0)
    nemesis: Nemesis | None = None
    try:
        await asyncio.gather(*(asyncio.to_thread(w.start, 240) for w in base))
        async with (
            Collector(cluster.bootstrap, [p + "alarms", p + "task-events"]) as seen,
            ClusterProbe(cluster, app) as probe,
        ):
            feeder = Feeder(cluster.bootstrap, p, STATIONS, start, seen, lambda: datetime.now(UTC))
            feeding = asyncio.create_task(feeder.run())
            nemesis = Nemesis(rng, cluster, probe, base, make, topics, p)
            await probe.wait_in_sync(topics, 300)
            await asyncio.sleep(8)  # tasks dispatched, feedback and deadlines under way
            await nemesis.run(time.monotonic() + minutes * 60, gap, log, kinds)
            await asyncio.sleep(4)
            feeder.stop()
            await feeding
            nemesis.check_exits()
            report = await final_audit(cluster.bootstrap, p, feeder, nemesis.all_workers())
            if missing := await hostile_not_refused(cluster.bootstrap, p, nemesis.hostile_sent):
                report["problems"]["hostile_not_refused"] = missing[:10]
    finally:
        for w in [*base, *(nemesis.extra if nemesis else [])]:
            if w.proc is not None and w.proc.poll() is None:
                with contextlib.suppress(AssertionError):
                    w.stop(60)
        cluster.close()
    args = {"minutes": minutes, "seed": seed, "brokers": brokers, "workers": workers}
    result = summary(nemesis, report, args)
    if result["problems"]:  # the brokers' and workers' data and logs, to look into
        result["kept"] = str(tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--brokers", type=int, choices=(1, 3), default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--faults", default=",".join(KINDS), help="the fault kinds to choose among (to narrow a loss down)"
    )
    a = ap.parse_args(argv)

    def log(action: Action) -> None:
        print(json.dumps(action.__dict__), flush=True)

    kinds = tuple(k for k in a.faults.split(",") if k)
    if unknown := set(kinds) - set(KINDS):
        ap.error(f"unknown fault kinds {sorted(unknown)}; choose among {', '.join(KINDS)}")
    result = asyncio.run(campaign(a.minutes, a.seed, a.brokers, a.workers, log=log, kinds=kinds))
    print(json.dumps(result), flush=True)
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
