"""A worker that stalls (SIGSTOP, as in a long GC pause or a frozen VM) for longer than its session
timeout is expelled from the group; when it wakes up it rejoins, gets its partitions back through a
rebalance, recovers its tables, and goes on. The auditor finds nothing lost or duplicated."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airgrid.config.settings import load_settings
from tests.helpers import Collector, Worker, produce, read_topics, worker_env
from tests.reliability.auditor import expected_alarms, settle, wallclock_rules
from tests.reliability.test_kill_audit import scenario

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.timeout(420)]
STALLS = int(os.environ.get("AIRGRID_TEST_STALLS", "3"))


async def test_a_stalled_worker_rejoins_and_loses_nothing(
    kafka_bootstrap: str, uid: str, tmp_path: Path
) -> None:
    env = worker_env(kafka_bootstrap, uid, tmp_path / "state", AIRGRID_SESSION_TIMEOUT_SECONDS="6")
    p = env["AIRGRID_TOPIC_PREFIX"]
    start = (datetime.now(UTC) - timedelta(hours=14)).replace(minute=0, second=0, microsecond=0)
    messages = scenario(start)
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    size = len(messages) // (STALLS + 1)
    chunks = [messages[i : i + size] for i in range(0, len(messages), size)]
    try:
        async with Collector(kafka_bootstrap, [p + "alarms", p + "task-events"]) as seen:
            for n, chunk in enumerate(chunks):
                await produce(kafka_bootstrap, p + "readings", chunk)
                if n < STALLS:
                    await asyncio.sleep(0.3 * (n + 1))  # mid-chunk: the worker is still busy
                    assert worker.proc is not None
                    os.killpg(worker.proc.pid, signal.SIGSTOP)
                    await asyncio.sleep(9)  # longer than the 6 s session timeout
                    os.killpg(worker.proc.pid, signal.SIGCONT)

            settings = load_settings()
            expected = expected_alarms(settings, [m for _, m in messages])
            ignore = wallclock_rules(settings)
            result = await settle(kafka_bootstrap, p, env["AIRGRID_APP_ID"], expected, ignore, seen, 120)
            print(
                f"\nstalls={STALLS} expected={result.expected} lost={len(result.lost)} "
                f"duplicated={result.duplicated} conflicting={len(result.conflicting)}"
            )
            assert result.clean, result.explain()
            # the readings were in order: a reading delivered again after a rejoin is a replay,
            # recognised by its offset, never a "too_late" dead letter
            dlq = (await read_topics(kafka_bootstrap, [p + "readings.dlq"]))[p + "readings.dlq"]
            assert dlq == [], [d.get("reason") for d in dlq[:3]]
            assert worker.proc is not None and worker.proc.poll() is None, worker.tail()
    finally:
        worker.stop(60)
