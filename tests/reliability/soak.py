"""The long soak: SIGKILL the worker at random moments for many minutes while readings flow,
then let the auditor count. Not part of the test suite (it runs as long as you ask):

    .venv/bin/python -m tests.reliability.soak --minutes 30 [--seed 1]

Prints a JSON line with kills, recovery times and the auditor's counts; exits 1 if anything was
lost, contradicted or applied twice."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from airgrid.config.settings import load_settings
from airgrid.kafka.local import LocalKafka, free_port
from tests.helpers import Collector, Worker, produce, short_policy, worker_env
from tests.reliability.auditor import expected_alarms, settle, wallclock_rules

STATIONS = [f"ST{i:03d}" for i in range(1, 41)]


def hour_of_readings(start: datetime, h: int) -> list[tuple[bytes, bytes]]:
    out = []
    for m in range(1, 7):
        at = start + timedelta(hours=h, minutes=10 * m)
        for i, st in enumerate(STATIONS):
            pm25 = 130.0 + i if (h + i) % 5 < 2 else 18.0 + m % 3
            out.append(
                (
                    st.encode(),
                    orjson.dumps(
                        {
                            "schema_version": 1,
                            "station_id": st,
                            "observed_at": at.isoformat(),
                            "interval_s": 600,
                            "values": {"pm25": pm25, "pm10": pm25 * 1.6, "no2": 30.0 + m},
                        }
                    ),
                )
            )
    return out


async def soak(minutes: float, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="airgrid-soak-"))
    kafka = LocalKafka(port=free_port(), controller_port=free_port(), data_dir=tmp / "kafka")
    kafka.start(timeout=120)
    uid = uuid.uuid4().hex[:8]
    env = worker_env(
        kafka.bootstrap, uid, tmp / "state", AIRGRID_POLICY_FILE=str(short_policy(tmp / "p.toml", 20, 10, 15))
    )
    p = env["AIRGRID_TOPIC_PREFIX"]
    worker = Worker(env, tmp / "worker.log")
    worker.start()
    hours = 24 * 300  # event time available: readings must stay within the max age
    start = (datetime.now(UTC) - timedelta(hours=hours)).replace(minute=0, second=0, microsecond=0)
    sent: list[bytes] = []
    kills, recoveries = 0, []
    ends = time.monotonic() + minutes * 60
    try:
        async with Collector(kafka.bootstrap, [p + "alarms", p + "task-events"]) as seen:
            h = 0
            next_kill = time.monotonic() + rng.uniform(5, 30)
            while time.monotonic() < ends and h < hours - 2:
                batch = hour_of_readings(start, h)
                await produce(kafka.bootstrap, p + "readings", batch)
                sent += [m for _, m in batch]
                h += 1
                if time.monotonic() >= next_kill:
                    worker.kill()
                    kills += 1
                    recoveries.append(await asyncio.to_thread(worker.start))
                    next_kill = time.monotonic() + rng.uniform(5, 30)
                await asyncio.sleep(0.2)
            settings = load_settings()
            expected = expected_alarms(settings, sent)
            ignore = wallclock_rules(settings)
            result = await settle(kafka.bootstrap, p, env["AIRGRID_APP_ID"], expected, ignore, seen, 180)
    finally:
        worker.stop(60)
        kafka.close()
    return {
        "minutes": minutes,
        "readings": len(sent),
        "kills": kills,
        "recovery_s_max": round(max(recoveries, default=0.0), 2),
        "recovery_s_mean": round(sum(recoveries) / max(len(recoveries), 1), 2),
        "expected_alarms": result.expected,
        "lost": len(result.lost),
        "duplicated": result.duplicated,
        "conflicting": len(result.conflicting),
        "task_conflicts": len(result.task_conflicts),
        "steps_twice": len(result.steps_twice),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    report = asyncio.run(soak(a.minutes, a.seed))
    print(json.dumps(report))
    bad = report["lost"] or report["conflicting"] or report["task_conflicts"] or report["steps_twice"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
