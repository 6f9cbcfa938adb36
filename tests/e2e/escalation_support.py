"""Shared by the escalation, feedback and kill tests: alarms injected on the alarms topic, a
policy file, feedback messages and an auditor of task-events that keeps the raw bytes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from airgrid.config.settings import DATA_DIR
from airgrid.domain.directory import Directory

DIRECTORY = Directory.load(DATA_DIR / "grids.json")


def write_policy(path: Path, **values: object) -> Path:
    """A one-policy book; values in seconds (lists for reminders)."""
    body = "\n".join(f"{k} = {orjson.dumps(v).decode()}" for k, v in values.items())
    path.write_text(f'default = "standard"\n[policies.standard]\n{body}\n')
    return path


def alarm(station: str, opened_at: datetime, severity: str = "major") -> bytes:
    """An ``opened`` alarm episode, as the detector would emit it."""
    aid = f"{station}:pm25_1h_exceedance:{opened_at:%Y%m%d%H%M}"
    return orjson.dumps(
        {
            "schema_version": 1,
            "event_id": f"{aid}:opened",
            "alarm_id": aid,
            "kind": "opened",
            "station_id": station,
            "rule_id": "pm25_1h_exceedance",
            "pollutant": "pm25",
            "severity": severity,
            "route": "grid",
            "value": 120.0,
            "threshold": 75.0,
            "period": "1h",
            "window_start": (opened_at - timedelta(hours=1)).isoformat(),
            "window_end": opened_at.isoformat(),
            "opened_at": opened_at.isoformat(),
            "emitted_at": datetime.now(UTC).isoformat(),
        }
    )


def feedback(fid: str, task_id: str, worker: str, action: str, **extra: object) -> bytes:
    return orjson.dumps(
        {
            "schema_version": 1,
            "feedback_id": fid,
            "task_id": task_id,
            "worker_id": worker,
            "action": action,
            "at": datetime.now(UTC).isoformat(),
            **extra,
        }
    )


def hour_ago(minutes: int = 0) -> datetime:
    base = (datetime.now(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)
    return base + timedelta(minutes=minutes)


@dataclass
class Audit:
    """Every message of the watched topics: raw bytes, decoded value and arrival time."""

    bootstrap: str
    topics: list[str]
    rows: list[tuple[str, bytes, dict[str, Any], float]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Audit:
        self.consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            metadata_max_age_ms=1000,
            isolation_level="read_committed",
        )
        await self.consumer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        async for msg in self.consumer:
            with contextlib.suppress(orjson.JSONDecodeError):
                self.rows.append((msg.topic, msg.value, orjson.loads(msg.value), time.monotonic()))

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.consumer.stop()

    def of(self, topic: str) -> list[dict[str, Any]]:
        return [value for t, _, value, _ in self.rows if t == topic]

    def raw(self, topic: str) -> list[bytes]:
        return [raw for t, raw, _, _ in self.rows if t == topic]

    async def wait(self, topic: str, pred: Any, timeout: float, what: str, count: int = 1) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [v for v in self.of(topic) if pred(v)]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.02)
        tail = [(v.get("task_id"), v.get("version"), v.get("type")) for v in self.of(topic)[-8:]]
        raise AssertionError(f"timed out after {timeout}s on {topic} waiting for {what}; last: {tail}")


def distinct_events(raw: list[bytes]) -> tuple[dict[str, dict[str, Any]], int]:
    """Task events by event id, and how many copies beyond the first were seen. A copy could only
    be an outbox re-send when the topic's tail could not be read after a crash, so it must be
    byte-identical; different bytes under one id would mean a change applied twice."""
    first: dict[str, bytes] = {}
    copies = 0
    for data in raw:
        ev = orjson.loads(data)
        seen = first.setdefault(ev["event_id"], data)
        if seen is not data:
            assert seen == data, f"two different events under {ev['event_id']}:\n{seen!r}\n{data!r}"
            copies += 1
    return {k: orjson.loads(v) for k, v in first.items()}, copies


def types_by_task(events: dict[str, dict[str, Any]]) -> dict[str, list[tuple[int, str, int]]]:
    out: dict[str, list[tuple[int, str, int]]] = {}
    for ev in sorted(events.values(), key=lambda e: (e["task_id"], e["version"])):
        out.setdefault(ev["task_id"], []).append((ev["version"], ev["type"], ev["level"]))
    return out


def count_types(events: dict[str, dict[str, Any]]) -> Counter[str]:
    return Counter(ev["type"] for ev in events.values())
