"""SIGKILL the worker between two ingest checkpoints, under CPU load (issue 20): the states of the
readings since the last checkpoint exist only in memory and their offsets are uncommitted, so the
restarted worker reads them again against the last checkpointed state and re-sends the same alarm
events; the auditor finds nothing lost, contradicted or applied twice."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airgrid.config.settings import load_settings
from tests.helpers import Collector, Worker, produce, short_policy, worker_env
from tests.reliability.auditor import expected_alarms, settle, wallclock_rules
from tests.reliability.test_kill_audit import HOURS, scenario

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.timeout(420)]


async def kill_between_checkpoints(worker: Worker, within: float) -> bool:
    """Kill the worker once it has checkpointed and handled readings since: True if it did."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and worker.health()[0] == 200:
        saved = await asyncio.to_thread(worker.metric, "airgrid_ingest_checkpoint_rows_count")
        unsaved = await asyncio.to_thread(worker.metric, "airgrid_ingest_unsaved_messages")
        if saved >= 1 and unsaved >= 100:  # a second into the window: commits came meanwhile
            worker.kill()
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_kill_between_checkpoints_under_cpu_load_loses_nothing(
    kafka_bootstrap: str, uid: str, tmp_path: Path
) -> None:
    env = worker_env(
        kafka_bootstrap,
        uid,
        tmp_path / "state",
        AIRGRID_POLICY_FILE=str(short_policy(tmp_path / "p.toml", 4, 2, 3)),
        AIRGRID_SESSION_TIMEOUT_SECONDS="6",
        AIRGRID_CHECKPOINT_INTERVAL_SECONDS="3",
        AIRGRID_CHECKPOINT_MAX_READINGS="100000",
        BROKER_COMMIT_INTERVAL="0.2",  # Faust's own: commits fall inside every checkpoint window
    )
    p = env["AIRGRID_TOPIC_PREFIX"]
    start = (datetime.now(UTC) - timedelta(hours=2 * HOURS + 2)).replace(minute=0, second=0, microsecond=0)
    messages = scenario(start) + scenario(start + timedelta(hours=HOURS))
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # one core taken
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    kills = 0
    try:
        async with Collector(kafka_bootstrap, [p + "alarms", p + "task-events"]) as seen:

            async def feed() -> None:  # a steady flow (~100/s), no pause long enough to go idle
                for i in range(0, len(messages), 3):
                    await produce(kafka_bootstrap, p + "readings", messages[i : i + 3])
                    await asyncio.sleep(0.02)

            feeding = asyncio.create_task(feed())
            while not feeding.done() and kills < 3:
                if await kill_between_checkpoints(worker, 30):
                    kills += 1
                    await asyncio.to_thread(worker.start)
            await feeding
            assert kills >= 2, worker.tail()
            settings = load_settings()
            expected = expected_alarms(settings, [m for _, m in messages])
            ignore = wallclock_rules(settings)
            result = await settle(kafka_bootstrap, p, env["AIRGRID_APP_ID"], expected, ignore, seen, 120)
            print(f"\nkills between checkpoints={kills} expected={result.expected} dup={result.duplicated}")
            assert result.clean, result.explain()
            assert result.expected > 20
    finally:
        hog.kill()
        worker.stop()
