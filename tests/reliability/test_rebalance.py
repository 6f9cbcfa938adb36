"""Rebalances: two workers share the partitions; one is killed mid-stream and a new one joins.
Partitions move, tables recover on the new owner, and deadlines keep firing exactly once."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airgrid.config.settings import load_settings
from tests.helpers import Collector, Worker, produce, short_policy, worker_env
from tests.reliability.auditor import audit, expected_alarms, settle, wallclock_rules
from tests.reliability.test_kill_audit import scenario

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.timeout(420)]


async def test_partitions_move_and_deadlines_fire_once(
    kafka_bootstrap: str, uid: str, tmp_path: Path
) -> None:
    policy = str(short_policy(tmp_path / "p.toml", 6, 3, 4))

    def make(name: str) -> Worker:
        env = worker_env(
            kafka_bootstrap,
            uid,
            tmp_path / name,
            AIRGRID_POLICY_FILE=policy,
            AIRGRID_SESSION_TIMEOUT_SECONDS="6",
        )
        return Worker(env, tmp_path / f"{name}.log")

    w1, w2 = make("w1"), make("w2")
    p = w1.env["AIRGRID_TOPIC_PREFIX"]
    start = (datetime.now(UTC) - timedelta(hours=14)).replace(minute=0, second=0, microsecond=0)
    messages = scenario(start)
    third = len(messages) // 3
    w1.start()
    w2.start()
    w3: Worker | None = None
    try:
        async with Collector(kafka_bootstrap, [p + "alarms", p + "task-events"]) as seen:
            await produce(kafka_bootstrap, p + "readings", messages[:third])
            await asyncio.sleep(3)
            w2.kill()  # its partitions move to w1 after the session timeout
            await produce(kafka_bootstrap, p + "readings", messages[third : 2 * third])
            await asyncio.sleep(8)
            w3 = make("w3")
            w3.start()  # joins: partitions move again, tables restored from the changelogs
            await produce(kafka_bootstrap, p + "readings", messages[2 * third :])

            settings = load_settings()
            expected = expected_alarms(settings, [m for _, m in messages])
            ignore = wallclock_rules(settings)
            result = await settle(kafka_bootstrap, p, w1.env["AIRGRID_APP_ID"], expected, ignore, seen, 120)
            tasks = {e["task_id"] for e in seen.of(p + "task-events") if e["type"] == "dispatched"}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                top = {
                    e["task_id"]
                    for e in seen.of(p + "task-events")
                    if e["type"] == "escalated" and e["level"] == 1
                }
                if tasks and top >= tasks:
                    break
                await asyncio.sleep(1)
            final = audit(expected, seen.of(p + "alarms"), seen.of(p + "task-events"), ignore)
            final.notes = result.notes  # where settle looked, when it found something missing
            result = final
            print(
                f"\nexpected={result.expected} lost={len(result.lost)} duplicated="
                f"{result.duplicated} conflicting={len(result.conflicting)} tasks={len(tasks)} "
                f"steps_twice={len(result.steps_twice)}"
            )
            assert result.clean, result.explain()
            assert top >= tasks, f"{len(tasks - top)} tasks never reached level 1"
            assert w1.metric("airgrid_readings_total") > 0
    finally:
        for w in (w1, w3):
            if w is not None:
                w.stop(60)
