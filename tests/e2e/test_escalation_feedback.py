"""Feedback with rights on the real broker and worker, for a station located by its boundary:
the acknowledgement reminder; neighbours co-notified at dispatch; feedback from another grid,
from an unknown worker and with a forged grid id rejected; a level-3 worker cannot review;
a reviewer's reject reopens the task with a new deadline (the old schedule's commands are then
ignored); a second submission approved at level 1 closes it; nothing is accepted after that."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from tests.e2e.escalation_support import DIRECTORY, Audit, alarm, feedback, hour_ago, write_policy
from tests.helpers import Worker, produce, worker_env

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.timeout(300)]

STATION = "ST002"  # no explicit grid in the shipped directory: located by point-in-polygon
FINDINGS = {
    "source_found": True,
    "source_type": "catering_fumes",
    "measures": "fume purifier repaired, restaurant warned",
    "sources_inspected": 4,
    "photos": ["https://photos.example.org/a.jpg"],
}


async def test_feedback_rights_reject_reopens_and_approve_closes(
    kafka_bootstrap: str, uid: str, tmp_path: Path
) -> None:
    assert DIRECTORY.stations[STATION].grid is None
    lineage = DIRECTORY.lineage(STATION)
    assert lineage is not None
    outsider = DIRECTORY.lineage("ST009")
    assert outsider is not None and outsider.l2 != lineage.l2 and outsider.l1 != lineage.l1
    policy = write_policy(
        tmp_path / "policy.toml",
        feedback_deadline_s=120,
        reminders_before_s=[60],
        ack_deadline_s=1.5,
        escalate_after_s=60,
    )
    env = worker_env(
        kafka_bootstrap,
        uid,
        tmp_path / "state",
        AIRGRID_POLICY_FILE=str(policy),
        AIRGRID_CO_NOTIFY_RADIUS_KM="2.0",
    )
    p = env["AIRGRID_TOPIC_PREFIX"]
    events_t, rejected_t, fb_t = p + "task-events", p + "feedback.rejected", p + "feedback"
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    l3_worker = f"W-{lineage.l3}-1"
    try:
        async with Audit(kafka_bootstrap, [events_t, rejected_t]) as audit:
            await produce(kafka_bootstrap, p + "alarms", [(STATION.encode(), alarm(STATION, hour_ago()))])
            (dispatched,) = await audit.wait(events_t, lambda e: e["type"] == "dispatched", 30, "dispatch")
            task_id = dispatched["task_id"]
            assert dispatched["grid_id"] == lineage.l3
            assert dispatched["co_notified"] == list(DIRECTORY.neighbours(STATION, 2.0))
            assert dispatched["co_notified"] and lineage.l3 not in dispatched["co_notified"]
            (reminder,) = await audit.wait(events_t, lambda e: e["type"] == "reminded", 20, "ack reminder")
            assert reminder["note"] == "not acknowledged" and reminder["version"] == 2

            forged = orjson.loads(feedback("fb-forged", task_id, f"W-{outsider.l3}-1", "acknowledge"))
            forged["grid_id"] = lineage.l3  # claims the task's grid: the message cannot carry one
            await produce(
                kafka_bootstrap,
                fb_t,
                [
                    (b"k", feedback("fb-other", task_id, f"W-{outsider.l3}-1", "acknowledge")),
                    (b"k", orjson.dumps(forged)),
                    (b"k", feedback("fb-ghost", task_id, f"W-{lineage.l3}-9", "acknowledge")),
                    (b"k", feedback("fb-1", task_id, l3_worker, "acknowledge")),
                    (b"k", feedback("fb-2", task_id, l3_worker, "on_site")),
                    (b"k", feedback("fb-3", task_id, l3_worker, "submit", findings=FINDINGS)),
                    (b"k", feedback("fb-4", task_id, l3_worker, "approve")),  # not a reviewer
                    (b"k", feedback("fb-5", task_id, f"W-{outsider.l2}", "reject")),  # wrong branch
                    (b"k", feedback("fb-6", task_id, f"W-{lineage.l2}", "reject", comment="no photo")),
                ],
            )
            (reopened,) = await audit.wait(events_t, lambda e: e["type"] == "feedback_rejected", 30, "reject")
            assert reopened["state"] == "on_site" and reopened["worker_id"] == f"W-{lineage.l2}"
            assert reopened["deadline_at"] > dispatched["deadline_at"]

            # the old schedule (id 1) is dead: a command for it changes nothing
            stale = {
                "kind": "deadline",
                "task_id": task_id,
                "station_id": STATION,
                "schedule_id": 1,
                "step": 1,
                "due_at": dispatched["at"],
                "issued_at": datetime.now(UTC).isoformat(),
            }
            await produce(kafka_bootstrap, p + "task-commands", [(STATION.encode(), orjson.dumps(stale))])
            for _ in range(100):
                if worker.metric("airgrid_deadline_commands_total", outcome="stale") >= 1:
                    break
                await asyncio.sleep(0.1)
            assert worker.metric("airgrid_deadline_commands_total", outcome="stale") >= 1

            await produce(
                kafka_bootstrap,
                fb_t,
                [
                    (b"k", feedback("fb-7", task_id, l3_worker, "submit", findings=FINDINGS)),
                    (b"k", feedback("fb-8", task_id, f"W-{lineage.l1}", "approve")),
                    (b"k", feedback("fb-9", task_id, l3_worker, "on_site")),  # closed: refused
                ],
            )
            await audit.wait(events_t, lambda e: e["type"] == "closed", 30, "closure")
            await audit.wait(rejected_t, lambda r: r["feedback_id"] == "fb-9", 30, "fb-9 refused")
    finally:
        assert worker.stop() == 0, worker.tail()

    chain = [e for e in audit.of(events_t) if e["task_id"] == task_id]
    assert [e["version"] for e in chain] == list(range(1, len(chain) + 1))
    assert [e["type"] for e in chain] == [
        "dispatched",
        "reminded",
        "acknowledged",
        "on_site",
        "feedback_submitted",
        "departments_notified",
        "feedback_rejected",
        "feedback_submitted",
        "departments_notified",
        "closed",
    ]
    submitted = chain[4]
    assert submitted["findings"] == {**FINDINGS, "sources": []} and submitted["worker_id"] == l3_worker
    assert chain[5]["departments"] == ["urban_management", "market_regulation"]
    assert chain[-1]["worker_id"] == f"W-{lineage.l1}" and chain[-1]["state"] == "closed"

    codes = {r["feedback_id"] or "?": r["reason_code"] for r in audit.of(rejected_t)}
    assert codes == {
        "fb-other": "wrong_grid",
        "?": "invalid",  # the forged message: unknown field grid_id
        "fb-ghost": "unknown_worker",
        "fb-4": "not_reviewer",
        "fb-5": "wrong_grid",
        "fb-9": "illegal_transition",
    }
    forged_rej = next(r for r in audit.of(rejected_t) if r["reason_code"] == "invalid")
    assert "grid_id" in forged_rej["reason"] and "fb-forged" in forged_rej["payload"]
    other = next(r for r in audit.of(rejected_t) if r["feedback_id"] == "fb-other")
    assert outsider.l3 in other["reason"] and other["origin"]["topic"] == fb_t
