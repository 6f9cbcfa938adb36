"""After downtime, overdue tasks are caught up one step at a time: the worker is stopped right
after a dispatch for longer than the whole chain, restarted, and the four overdue steps come
one policy gap apart (the schedule shifts by the delay), not in a burst."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.e2e.escalation_support import Audit, alarm, hour_ago, write_policy
from tests.helpers import Worker, produce, worker_env

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

GAPS = {"reminded": 1.5, "escalated": 2.0}  # before this step: overdue reminder 1.5 s, escalations 2 s


async def test_overdue_steps_after_downtime_come_one_gap_apart(
    kafka_bootstrap: str, uid: str, tmp_path: Path
) -> None:
    # steps at +1.5 (reminder), +3 (overdue reminder), +5 (level 2), +7 (level 1)
    policy = write_policy(
        tmp_path / "policy.toml",
        feedback_deadline_s=3,
        reminders_before_s=[1.5],
        overdue_reminder=True,
        escalate_after_s=2,
    )
    env = worker_env(kafka_bootstrap, uid, tmp_path / "state", AIRGRID_POLICY_FILE=str(policy))
    topic = env["AIRGRID_TOPIC_PREFIX"] + "task-events"
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    try:
        async with Audit(kafka_bootstrap, [topic]) as audit:
            await produce(
                kafka_bootstrap,
                env["AIRGRID_TOPIC_PREFIX"] + "alarms",
                [(b"ST005", alarm("ST005", hour_ago()))],
            )
            (dispatched,) = await audit.wait(topic, lambda e: e["type"] == "dispatched", 30, "dispatch")
            assert worker.stop() == 0
            down = time.monotonic()
            assert not [e for e in audit.of(topic) if e["type"] != "dispatched"], "stopped too late"
            await asyncio.sleep(max(0.0, 10 - (time.monotonic() - down)))  # the whole chain is overdue
            worker.start()
            await audit.wait(topic, lambda e: e["type"] == "escalated" and e["level"] == 1, 40, "level 1")
    finally:
        worker.stop()

    chain = [e for e in audit.of(topic) if e["task_id"] == dispatched["task_id"]]
    assert [(e["version"], e["type"], e["level"]) for e in chain] == [
        (1, "dispatched", 3),
        (2, "reminded", 3),
        (3, "reminded", 3),
        (4, "escalated", 2),
        (5, "escalated", 1),
    ]
    at = [datetime.fromisoformat(e["at"]) for e in chain]
    assert (at[1] - at[0]).total_seconds() >= 9, "the first overdue step ran before the restart"
    gaps = [(at[i + 1] - at[i]).total_seconds() for i in range(1, 4)]
    print("\ncatch-up gaps after restart (s):", [round(g, 2) for g in gaps])
    for gap, ev in zip(gaps, chain[2:], strict=True):
        # one policy gap apart (minus a sweep interval of jitter), never a burst
        assert gap >= GAPS[ev["type"]] - 0.3, (ev["type"], gaps)
