"""Reliability run: SIGKILL the real worker at random moments of many tasks' deadline chains and
count what was lost or duplicated on ``task-events``. Prints figures; exits 1 on a loss, a
double application or a copy.

    .venv/bin/python -m bench.kill_deadlines [--bootstrap HOST:PORT] [--tasks 12] [--kills 8]

Without --bootstrap a local KRaft broker is started (``airgrid kafka`` machinery).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from airgrid.kafka.local import LocalKafka, free_port
from tests.e2e.escalation_support import Audit, alarm, distinct_events, hour_ago, types_by_task, write_policy
from tests.helpers import Worker, produce, worker_env

CHAIN = [
    (1, "dispatched", 3),
    (2, "reminded", 3),
    (3, "reminded", 3),
    (4, "escalated", 2),
    (5, "escalated", 1),
]


async def run(bootstrap: str, tasks: int, kills: int, seed: int, work: Path, deadline: float) -> int:
    rng = random.Random(seed)
    uid = uuid.uuid4().hex[:10]
    policy = write_policy(
        work / "policy.toml",
        feedback_deadline_s=deadline,
        reminders_before_s=[deadline / 2],
        overdue_reminder=True,
        escalate_after_s=deadline / 2,
    )
    env = worker_env(
        bootstrap, uid, work / "state", AIRGRID_POLICY_FILE=str(policy), AIRGRID_SESSION_TIMEOUT_SECONDS="6"
    )
    topic = env["AIRGRID_TOPIC_PREFIX"] + "task-events"
    stations = [f"ST{i:03d}" for i in range(1, tasks + 1)]
    worker = Worker(env, work / "worker.log")
    worker.start()
    recoveries: list[float] = []
    try:
        async with Audit(bootstrap, [topic]) as audit:
            await produce(
                bootstrap,
                env["AIRGRID_TOPIC_PREFIX"] + "alarms",
                [(s.encode(), alarm(s, hour_ago(i))) for i, s in enumerate(stations)],
            )
            await audit.wait(topic, lambda e: e["type"] == "dispatched", 60, "dispatches", tasks)

            def finished() -> bool:
                return sum(1 for e in audit.of(topic) if (e["type"], e["level"]) == ("escalated", 1)) >= tasks

            for n in range(kills):
                if n % 2:  # at a random moment
                    await asyncio.sleep(rng.uniform(0.5, 4.0))
                else:  # right as a step is published: commits of other tasks are in flight
                    seen = len(audit.raw(topic))
                    await audit.wait(
                        topic, lambda e, k=seen: len(audit.raw(topic)) > k or finished(), 120, "a step"
                    )
                if finished():
                    break
                worker.kill()
                began, since = time.monotonic(), datetime.now(UTC)
                worker.start()
                await audit.wait(
                    topic,
                    lambda e, t=since: datetime.fromisoformat(e["at"]) > t or finished(),
                    60,
                    "an event after the restart",
                )
                if not finished():
                    recoveries.append(time.monotonic() - began)
            await audit.wait(
                topic, lambda e: (e["type"], e["level"]) == ("escalated", 1), 120, "level 1", count=tasks
            )
            await asyncio.sleep(3)
            raw = audit.raw(topic)
    finally:
        worker.stop()
    events, copies = distinct_events(raw)  # raises on two different events under one id
    wrong = {t: c for t, c in types_by_task(events).items() if c != CHAIN}
    print(
        f"tasks {tasks}, kills {len(recoveries)}, task events {len(raw)} raw / {len(events)} distinct, "
        f"copies {copies}, wrong chains {len(wrong)}"
    )
    if recoveries:
        print(
            f"recovery after SIGKILL (restart -> first event applied): median "
            f"{statistics.median(recoveries):.2f} s, max {max(recoveries):.2f} s "
            f"(session timeout 6 s dominates)"
        )
    for task_id, chain in wrong.items():
        print(f"  {task_id}: {chain}")
    restarts = worker.log_path.read_text(errors="replace").count("left in the outbox by a crash")
    print(f"outbox recoveries after a kill: {restarts}")
    return 1 if wrong or copies or len(events) != 5 * tasks else 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--bootstrap", default=None)
    p.add_argument("--tasks", type=int, default=12)
    p.add_argument("--kills", type=int, default=8)
    p.add_argument("--seed", type=int, default=4)
    p.add_argument("--deadline", type=float, default=40, help="feedback deadline of the test policy, s")
    a = p.parse_args()
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="airgrid-kill-")))
        bootstrap = a.bootstrap
        if bootstrap is None:
            kafka = LocalKafka(port=free_port(), controller_port=free_port(), data_dir=work / "kafka")
            kafka.start(timeout=180)
            stack.callback(kafka.close)
            bootstrap = kafka.bootstrap
        sys.exit(asyncio.run(run(bootstrap, a.tasks, a.kills, a.seed, work, a.deadline)))


if __name__ == "__main__":
    main()
