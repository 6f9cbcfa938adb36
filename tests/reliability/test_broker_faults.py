"""Broker faults under load: a clean restart, a hard kill and restart, and a pause (SIGSTOP)
longer than the worker's session timeout. The worker resumes by itself and nothing is lost."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airgrid.config.settings import load_settings
from airgrid.kafka.local import LocalKafka, free_port
from tests.helpers import Collector, Worker, produce, worker_env
from tests.reliability.auditor import expected_alarms, settle, wallclock_rules
from tests.reliability.test_kill_audit import scenario

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.timeout(420)]


async def test_worker_survives_broker_restarts_and_pause(uid: str, tmp_path: Path) -> None:
    kafka = LocalKafka(port=free_port(), controller_port=free_port(), data_dir=tmp_path / "kafka")
    kafka.start(timeout=120)
    env = worker_env(kafka.bootstrap, uid, tmp_path / "state", AIRGRID_SESSION_TIMEOUT_SECONDS="8")
    p = env["AIRGRID_TOPIC_PREFIX"]
    start = (datetime.now(UTC) - timedelta(hours=14)).replace(minute=0, second=0, microsecond=0)
    messages = scenario(start)
    parts = [
        messages[: len(messages) // 4],
        messages[len(messages) // 4 : len(messages) // 2],
        messages[len(messages) // 2 : 3 * len(messages) // 4],
        messages[3 * len(messages) // 4 :],
    ]
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    timings: dict[str, float] = {}
    try:
        async with Collector(kafka.bootstrap, [p + "alarms", p + "task-events"]) as seen:
            await produce(kafka.bootstrap, p + "readings", parts[0])
            await asyncio.sleep(2)

            began = time.monotonic()
            await asyncio.to_thread(kafka.stop)
            await asyncio.to_thread(kafka.start, 120)
            timings["clean_restart_s"] = time.monotonic() - began
            await produce(kafka.bootstrap, p + "readings", parts[1])
            await asyncio.sleep(2)

            began = time.monotonic()
            await asyncio.to_thread(kafka.kill)
            await asyncio.to_thread(kafka.start, 120)
            timings["hard_restart_s"] = time.monotonic() - began
            await produce(kafka.bootstrap, p + "readings", parts[2])
            await asyncio.sleep(2)

            kafka.pause()
            await asyncio.sleep(12)  # longer than the 8 s session timeout
            kafka.resume()
            await produce(kafka.bootstrap, p + "readings", parts[3])

            settings = load_settings()
            expected = expected_alarms(settings, [m for _, m in messages])
            ignore = wallclock_rules(settings)
            result = await settle(kafka.bootstrap, p, env["AIRGRID_APP_ID"], expected, ignore, seen, 120)
            print(
                f"\n{timings} expected={result.expected} lost={len(result.lost)} "
                f"duplicated={result.duplicated} conflicting={len(result.conflicting)}"
            )
            assert result.clean, result.explain()
            assert worker.proc is not None and worker.proc.poll() is None, worker.tail()
    finally:
        worker.stop(60)
        kafka.close()
