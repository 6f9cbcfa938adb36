"""Scheduled supervision on the real broker with the real worker process, across a kill -9
(issue 17): every level-3 grid gets its patrol task of each period exactly once, whatever the
scheduler asked twice; a patrol report with the sources visited lands in the projection's
source register."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from tests.helpers import Collector, Worker, produce, worker_env

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.timeout(300)]

GRIDS = [f"L3-A{i}" for i in range(1, 7)]
PERIOD_S = 12
POLICY = f"""
default = "s"
[policies.s]
feedback_deadline_s = 3600
[policies.patrol]
feedback_deadline_s = 3600
reminders_before_s = []
overdue_reminder = false
escalate_after_s = 3600
[supervision]
burst = 3
[supervision.patrol]
every_s = {PERIOD_S}
policy = "patrol"
"""


def directory(path: Path) -> Path:
    grids = [
        {"id": "L1-A", "name": "city", "level": 1},
        {"id": "L2-A", "name": "district", "level": 2, "parent": "L1-A"},
    ]
    grids += [{"id": g, "name": g, "level": 3, "parent": "L2-A"} for g in GRIDS]
    workers = [{"id": f"W-{g['id']}", "name": g["name"], "grid": g["id"]} for g in grids]
    stations = [{"id": "S1", "name": "S1", "lon": 116.3, "lat": 39.9, "grid": GRIDS[0]}]
    doc = {"schema_version": 1, "city": "test", "grids": grids, "workers": workers, "stations": stations}
    path.write_text(json.dumps(doc))
    return path


def patrols(events: list[dict]) -> list[tuple[str, str]]:
    return [
        (e["station_id"], e["period_start"])
        for e in events
        if e["type"] == "dispatched" and e.get("kind") == "patrol"
    ]


async def test_each_grid_gets_one_patrol_task_per_period_across_a_kill(
    kafka_bootstrap: str, uid: str, tmp_path: Path
) -> None:
    (tmp_path / "policy.toml").write_text(POLICY)
    env = worker_env(
        kafka_bootstrap,
        uid,
        tmp_path / "state",
        AIRGRID_GRID_FILE=str(directory(tmp_path / "grids.json")),
        AIRGRID_POLICY_FILE=str(tmp_path / "policy.toml"),
        AIRGRID_SUPERVISION_ENABLED="true",
        AIRGRID_SUPERVISION_INTERVAL_SECONDS="0.5",
        AIRGRID_SESSION_TIMEOUT_SECONDS="6",  # the killed member leaves the group soon
    )
    prefix = env["AIRGRID_TOPIC_PREFIX"]
    events_topic, feedback_topic = prefix + "task-events", prefix + "feedback"
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    try:
        async with Collector(kafka_bootstrap, [events_topic]) as seen:
            # burst 3 per pass: the six grids' tasks come over two passes; kill between them
            await seen.wait_for(events_topic, lambda e: e.get("kind") == "patrol", 60, "a first patrol task")
            worker.kill()
            worker.start()
            deadline = time.monotonic() + 5 * PERIOD_S
            while time.monotonic() < deadline:
                await asyncio.sleep(1)
            made = patrols(seen.of(events_topic))
            counts = Counter(made)
            assert counts and max(counts.values()) == 1, [k for k, n in counts.items() if n > 1]
            periods = sorted({p for _, p in made})
            # periods while the group rebalanced after the kill may be missing (created neither
            # late nor twice); the whole periods since then have every grid's task
            full = periods[-3:-1]
            assert len(periods) >= 4 and len(full) == 2, periods
            for p in full:
                assert sorted(g for g, q in made if q == p) == GRIDS, p
            assert worker.metric("airgrid_supervision_tasks_total", duty="patrol", outcome="created") > 0

            # a patrol report naming two sources reaches the source register
            task = next(
                e for e in seen.of(events_topic) if e.get("kind") == "patrol" and e["station_id"] == GRIDS[1]
            )
            now = datetime.now(UTC).isoformat()
            report = {
                "schema_version": 1,
                "feedback_id": f"fb-{uid}",
                "task_id": task["task_id"],
                "worker_id": f"W-{GRIDS[1]}",
                "action": "submit",
                "at": now,
                "findings": {
                    "source_found": True,
                    "sources_inspected": 2,
                    "sources": [
                        {"id": "SRC-A", "type": "construction_dust", "problem_found": True, "handled": True},
                        {"type": "catering_fumes", "lon": 116.31, "lat": 39.91},
                    ],
                },
            }
            ack = {**report, "feedback_id": f"ack-{uid}", "action": "on_site", "findings": None}
            await produce(
                kafka_bootstrap,
                feedback_topic,
                [
                    (task["task_id"].encode(), orjson.dumps(ack)),
                    (task["task_id"].encode(), orjson.dumps(report)),
                ],
            )
            await seen.wait_for(
                events_topic,
                lambda e: e["type"] == "feedback_submitted" and e["task_id"] == task["task_id"],
                30,
                "the patrol report",
            )
            rows = await _register(tmp_path / "state" / "airgrid.db", 2)
            assert rows == [
                ("SRC-A", GRIDS[1], 1, 1, 1),
                ("catering_fumes@39.9100,116.3100", GRIDS[1], 1, 0, 0),
            ]
    finally:
        code = worker.stop()
    assert code == 0, worker.tail()


async def _register(db: Path, n: int, timeout: float = 20) -> list[tuple]:
    deadline = time.monotonic() + timeout
    rows: list[tuple] = []
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(db) as conn:
                rows = conn.execute(
                    "select source_id, grid_id, inspections, problems, handled "
                    "from sources order by source_id"
                ).fetchall()
        except sqlite3.OperationalError:
            rows = []
        if len(rows) >= n:
            return rows
        await asyncio.sleep(0.3)
    return rows
