"""Test helpers that drive the real worker process and the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from airgrid.demo import wait_http
from airgrid.kafka.local import free_port

REPO = Path(__file__).resolve().parents[1]
SHORT_POLICY = """
default = "standard"
[policies.standard]
feedback_deadline_s = {deadline}
reminders_before_s = [{before}]
overdue_reminder = true
escalate_after_s = {escalate}
"""


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any AIRGRID_* variable of the calling shell, plus ``extra``."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AIRGRID_")} | extra


def airgrid_cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m airgrid ARGS`` in the repository with exactly ``env``; never raises on its exit code."""
    return subprocess.run(
        [sys.executable, "-m", "airgrid", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def worker_env(bootstrap: str, uid: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment of an isolated worker: its own topics, group, state and port."""
    env = clean_env()
    env.update(
        AIRGRID_BROKER=f"kafka://{bootstrap}",
        AIRGRID_TOPIC_PREFIX=f"t{uid}.",
        AIRGRID_APP_ID=f"airgrid-{uid}",
        AIRGRID_DATA_DIR=str(data_dir),
        AIRGRID_WEB_PORT=str(free_port()),
        AIRGRID_SWEEP_INTERVAL_SECONDS="0.2",
        AIRGRID_PROJECTION_WITHIN_SECONDS="0.1",
        # the shipped policy's weekly patrols etc. would add a thousand tasks to every test
        AIRGRID_SUPERVISION_ENABLED="false",
    )
    env.update(extra)
    return env


def short_policy(path: Path, deadline: float = 3, before: float = 1.5, escalate: float = 2) -> Path:
    path.write_text(SHORT_POLICY.format(deadline=deadline, before=before, escalate=escalate))
    return path


@dataclass
class Worker:
    """The real ``airgrid worker`` process."""

    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    # the command line; a test may run the worker under a fault injector (tests/e2e/faults)
    command: tuple[str, ...] = (sys.executable, "-m", "airgrid")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.env['AIRGRID_WEB_PORT']}"

    def arguments(self) -> list[str]:
        """What the program is asked to run; a subclass runs another command (the gateway)."""
        return ["worker", "-l", os.environ.get("AIRGRID_TEST_WORKER_LOG", "info")]

    def spawn(self) -> None:
        """Start the process and return at once."""
        fh = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*self.command, *self.arguments()],
            env=self.env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )

    def health(self) -> tuple[int, dict[str, Any]]:
        """Status and body of ``/health`` (readiness); (0, {}) while nothing answers."""
        try:
            with urllib.request.urlopen(self.base_url + "/health", timeout=2) as resp:
                return resp.status, orjson.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, orjson.loads(exc.read() or b"{}")
        except OSError:
            return 0, {}

    def start(self, wait: float = 90.0) -> float:
        began = time.monotonic()
        self.spawn()
        assert self.proc is not None
        if wait_http(self.base_url + "/health", wait, self.proc):
            return time.monotonic() - began
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
        raise AssertionError(f"worker not healthy after {wait}s:\n{self.tail()}")

    def metrics(self) -> str:
        with urllib.request.urlopen(self.base_url + "/metrics", timeout=5) as resp:
            return resp.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        total = 0.0
        for line in self.metrics().splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            head, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total

    def stop(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise AssertionError(f"worker ignored SIGTERM for {timeout}s:\n{self.tail()}") from None
        return self.proc.returncode

    def kill(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


async def produce(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> None:
    """Write ``messages`` in order and wait until Kafka has every one: a failed send raises.

    Idempotent, with a long delivery timeout, so that the retries a broker fault causes neither
    duplicate a message nor give up on one (a test harness that drops input silently would report
    the worker's "losses" for it)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, request_timeout_ms=120_000
    )
    await producer.start()
    try:
        acks = [await producer.send(topic, key=key, value=value) for key, value in messages]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


async def read_topics(
    bootstrap: str, topics: list[str], timeout: float = 60.0
) -> dict[str, list[dict[str, Any]]]:
    """Every JSON message of ``topics``, read afresh from the beginning up to their current end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: dict[str, list[dict[str, Any]]] = {t: [] for t in topics}
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(await _partitions(consumer, t, timeout))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = {tp: off for tp, off in (await consumer.end_offsets(tps)).items() if off > 0}
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline:
            for tp, msgs in (await consumer.getmany(*ends, timeout_ms=500)).items():
                for msg in msgs:
                    with contextlib.suppress(orjson.JSONDecodeError):
                        out[tp.topic].append(orjson.loads(msg.value))
            ends = {tp: end for tp, end in ends.items() if await consumer.position(tp) < end}
        if ends:
            raise AssertionError(f"could not read {sorted(map(str, ends))} to the end in {timeout}s")
    finally:
        await consumer.stop()
    return out


async def _partitions(consumer: AIOKafkaConsumer, topic: str, timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metadata = await consumer._client.fetch_all_metadata()  # the topics it never subscribed to
        parts = metadata.partitions_for_topic(topic)
        if parts:
            return set(parts)
        await asyncio.sleep(0.2)
    raise AssertionError(f"topic {topic} has no partitions after {timeout}s")


async def consumer_lag(bootstrap: str, group: str, topic: str) -> dict[int, tuple[int | None, int]]:
    """partition -> (the group's committed offset, the end offset) of ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(await _partitions(consumer, topic, 30))]
        consumer.assign(tps)  # no join: the group's members keep their partitions
        ends = await consumer.end_offsets(tps)
        return {tp.partition: (await consumer.committed(tp), ends[tp]) for tp in tps}
    finally:
        await consumer.stop()


@dataclass
class Collector:
    """Reads topics from the beginning into lists, in the background."""

    bootstrap: str
    topics: list[str]
    seen: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    raw: dict[str, list[bytes]] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Collector:
        self.consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            metadata_max_age_ms=1000,
        )
        await self.consumer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        async for msg in self.consumer:
            self.raw.setdefault(msg.topic, []).append(msg.value)
            with contextlib.suppress(orjson.JSONDecodeError):
                self.seen.setdefault(msg.topic, []).append(orjson.loads(msg.value))

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.consumer.stop()

    def of(self, topic: str) -> list[dict[str, Any]]:
        return self.seen.get(topic, [])

    async def wait_for(
        self, topic: str, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str = ""
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for item in self.of(topic):
                if predicate(item):
                    return item
            await asyncio.sleep(0.1)
        raise AssertionError(
            f"timed out after {timeout}s waiting on {topic} for {what}; "
            f"seen {len(self.of(topic))}: {self.of(topic)[-5:]}"
        )


def untasked_alarms(alarms: list[dict[str, Any]], task_events: list[dict[str, Any]]) -> list[str]:
    """Alarm ids of opened grid alarms that no task event dispatched or joined: each opened alarm
    routed to a grid must become a task, or join the station's open one."""
    tasked = {e.get("alarm_id") for e in task_events if e["type"] in ("dispatched", "alarm_joined")}
    opened = {a["alarm_id"] for a in alarms if a["kind"] == "opened" and a.get("route") == "grid"}
    return sorted(opened - tasked)


def internal_refusals(letters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dead letters or refusals caused by an internal error: there must be none (issue 18)."""
    return [x for x in letters if x.get("reason_code") == "internal"]
