"""Deadlines survive SIGKILL: the real worker is killed twice in the middle of the deadline chain
of four tasks (right after the first reminder, then right after the first escalation) and
restarted with the same app id; every reminder and escalation still happens exactly once.

``rocksdb``: restarted on the same data dir (local state plus the changelog tail).
``memory``: no local state survives, so the tables come back from the changelog alone: what a
worker taking over the partitions in a rebalance sees.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.escalation_support import (
    DIRECTORY,
    Audit,
    alarm,
    count_types,
    distinct_events,
    hour_ago,
    types_by_task,
    write_policy,
)
from tests.helpers import Worker, produce, worker_env

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

STATIONS = ["ST001", "ST002", "ST003", "ST004"]
CHAIN = [
    (1, "dispatched", 3),
    (2, "reminded", 3),
    (3, "reminded", 3),
    (4, "escalated", 2),
    (5, "escalated", 1),
]


@pytest.mark.parametrize("store", ["rocksdb", "memory"])
async def test_sigkill_mid_chain_applies_each_step_exactly_once(
    kafka_bootstrap: str, uid: str, tmp_path: Path, store: str
) -> None:
    policy = write_policy(
        tmp_path / "policy.toml",
        feedback_deadline_s=6,
        reminders_before_s=[3],
        overdue_reminder=True,
        escalate_after_s=3,
    )
    env = worker_env(
        kafka_bootstrap,
        uid,
        tmp_path / "state",
        AIRGRID_POLICY_FILE=str(policy),
        AIRGRID_STORE=store,
        AIRGRID_SESSION_TIMEOUT_SECONDS="6",  # the killed member's partitions free up after 6 s
    )
    events_topic = env["AIRGRID_TOPIC_PREFIX"] + "task-events"
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    figures: dict[str, object] = {"store": store}
    kills = 0
    try:
        async with Audit(kafka_bootstrap, [events_topic]) as audit:
            await produce(
                kafka_bootstrap,
                env["AIRGRID_TOPIC_PREFIX"] + "alarms",
                [(st.encode(), alarm(st, hour_ago(i))) for i, st in enumerate(STATIONS)],
            )
            await audit.wait(events_topic, lambda e: e["type"] == "dispatched", 30, "4 dispatches", 4)
            for i, (etype, level) in enumerate([("reminded", 3), ("escalated", 2)], start=1):
                await audit.wait(
                    events_topic, lambda e, t=etype, lv=level: (e["type"], e["level"]) == (t, lv), 40, etype
                )
                worker.kill()  # SIGKILL, right after the step was published
                kills += 1
                restarted, since = time.monotonic(), datetime.now(UTC)
                figures[f"kill{i}_health_s"] = round(worker.start(), 2)
                await audit.wait(
                    events_topic,
                    lambda e, t=since: datetime.fromisoformat(e["at"]) > t,
                    40,
                    "a task event applied after the restart",
                )
                figures[f"kill{i}_first_event_s"] = round(time.monotonic() - restarted, 2)
            await audit.wait(
                events_topic,
                lambda e: (e["type"], e["level"]) == ("escalated", 1),
                60,
                "4 escalations to level 1",
                count=4,
            )
            await asyncio.sleep(3)  # late duplicates, if any, would arrive now
            raw = audit.raw(events_topic)
    finally:
        worker.stop()

    events, copies = distinct_events(raw)
    figures.update(kills=kills, raw_events=len(raw), distinct=len(events), byte_identical_copies=copies)
    print("\nkill-test figures:", figures)
    chains = types_by_task(events)
    assert len(chains) == len(STATIONS)
    for task_id, chain in chains.items():
        assert chain == CHAIN, f"{task_id}: {chain}"
    assert len({(e["task_id"], e["version"]) for e in events.values()}) == len(events) == 20
    assert count_types(events) == {"dispatched": 4, "reminded": 8, "escalated": 8}
    # no copies either: an outbox left by a kill is sent only for the events the topic lacks
    assert copies == 0 and len(raw) == 20
    for ev in events.values():
        lineage = DIRECTORY.lineage(ev["station_id"])
        assert lineage is not None and ev["grid_id"] == lineage.at(ev["level"])


async def test_partitions_move_to_a_live_worker_and_back_without_double_steps(
    kafka_bootstrap: str, uid: str, tmp_path: Path
) -> None:
    """Two workers in one group: A is SIGKILLed after the first reminders, B takes A's partitions
    over from the changelogs (a rebalance), then A comes back and takes some of them again."""
    stations = [f"ST{i:03d}" for i in range(1, 9)]
    policy = write_policy(
        tmp_path / "policy.toml",
        feedback_deadline_s=8,
        reminders_before_s=[4],
        overdue_reminder=True,
        escalate_after_s=4,
    )
    extra = {"AIRGRID_POLICY_FILE": str(policy), "AIRGRID_SESSION_TIMEOUT_SECONDS": "6"}
    a = Worker(worker_env(kafka_bootstrap, uid, tmp_path / "a", **extra), tmp_path / "a.log")
    b = Worker(worker_env(kafka_bootstrap, uid, tmp_path / "b", **extra), tmp_path / "b.log")
    events_topic = a.env["AIRGRID_TOPIC_PREFIX"] + "task-events"
    a.start()
    b.start()
    try:
        async with Audit(kafka_bootstrap, [events_topic]) as audit:
            await asyncio.sleep(3)  # both members in the group before the alarms
            await produce(
                kafka_bootstrap,
                a.env["AIRGRID_TOPIC_PREFIX"] + "alarms",
                [(st.encode(), alarm(st, hour_ago(i))) for i, st in enumerate(stations)],
            )
            await audit.wait(events_topic, lambda e: e["type"] == "dispatched", 30, "dispatches", 8)
            await audit.wait(events_topic, lambda e: e["type"] == "reminded", 30, "a reminder")
            a.kill()
            await audit.wait(events_topic, lambda e: e["type"] == "escalated", 60, "an escalation")
            a.start()  # rebalance again: A takes some partitions back
            await audit.wait(
                events_topic, lambda e: (e["type"], e["level"]) == ("escalated", 1), 90, "level 1", count=8
            )
            await asyncio.sleep(3)
            raw = audit.raw(events_topic)
    finally:
        a.stop()
        b.stop()
    events, copies = distinct_events(raw)
    print("\nrebalance figures:", {"raw_events": len(raw), "distinct": len(events), "copies": copies})
    chains = types_by_task(events)
    assert len(chains) == len(stations)
    for task_id, chain in chains.items():
        assert chain == CHAIN, f"{task_id}: {chain}"
    assert count_types(events) == {"dispatched": 8, "reminded": 16, "escalated": 16}
    assert copies == 0 and len(raw) == 40
