"""SIGKILL the worker at random moments while readings, alarms and deadlines flow; after the last
restart the auditor finds no reading unprocessed, no alarm lost or contradicted, no task created
twice for one episode, every reminder and escalation applied once, and the SQL projection holding
every alarm and task event of the topics, once."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from airgrid.config.settings import load_settings
from tests.helpers import Collector, Worker, produce, short_policy, worker_env
from tests.reliability.auditor import audit, expected_alarms, projection_gaps, settle, wallclock_rules

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.timeout(420)]
STATIONS = [f"ST{i:03d}" for i in range(1, 13)]
HOURS = 12


def scenario(start: datetime) -> list[tuple[bytes, bytes]]:
    """Per station: two polluted hours, three clean ones, again; 10-minute readings, in order."""
    out = []
    for h in range(HOURS):
        for m in range(1, 7):
            at = start + timedelta(hours=h, minutes=10 * m)
            for i, st in enumerate(STATIONS):
                polluted = (h + i) % 5 < 2
                pm25 = 130.0 + i if polluted else 18.0 + (m % 3)
                out.append(
                    (
                        st.encode(),
                        orjson.dumps(
                            {
                                "schema_version": 1,
                                "station_id": st,
                                "observed_at": at.isoformat(),
                                "interval_s": 600,
                                "values": {
                                    "pm25": pm25,
                                    "pm10": pm25 * 1.6 + m,
                                    "no2": 30.0 + m,
                                    "so2": 8.0,
                                    "co": 0.7,
                                    "o3": 50.0 + m,
                                },
                            }
                        ),
                    )
                )
    return out


# fuller fetches (patches/fetch_batching.py) change how records reach the streams: audited too
FULL_FETCHES = {"AIRGRID_CONSUMER_FETCH_MIN_BYTES": "65536", "AIRGRID_CONSUMER_FETCH_MAX_WAIT_MS": "20"}


@pytest.mark.parametrize("fetch", [{}, FULL_FETCHES], ids=["default_fetch", "full_fetches"])
async def test_kills_lose_nothing_and_duplicate_nothing(
    kafka_bootstrap: str, uid: str, tmp_path: Path, fetch: dict[str, str]
) -> None:
    rng = random.Random(7)
    env = worker_env(
        kafka_bootstrap,
        uid,
        tmp_path / "state",
        AIRGRID_POLICY_FILE=str(short_policy(tmp_path / "p.toml", 4, 2, 3)),
        AIRGRID_SESSION_TIMEOUT_SECONDS="6",
        **fetch,
    )
    p = env["AIRGRID_TOPIC_PREFIX"]
    start = (datetime.now(UTC) - timedelta(hours=HOURS + 2)).replace(minute=0, second=0, microsecond=0)
    messages = scenario(start)
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    kills = 0
    recoveries: list[float] = []
    try:
        async with Collector(kafka_bootstrap, [p + "alarms", p + "task-events"]) as seen:
            chunks = [messages[i : i + 60] for i in range(0, len(messages), 60)]
            kill_at = sorted(rng.sample(range(2, len(chunks) - 1), 4))
            for n, chunk in enumerate(chunks):
                await produce(kafka_bootstrap, p + "readings", chunk)
                await asyncio.sleep(0.25)
                if n in kill_at:
                    await asyncio.sleep(rng.uniform(0, 1.5))
                    worker.kill()
                    kills += 1
                    recoveries.append(await asyncio.to_thread(worker.start))
            # let deadlines run out: every task reminded and escalated to the top
            await asyncio.sleep(2)
            worker.kill()
            kills += 1
            recoveries.append(await asyncio.to_thread(worker.start))
            settings = load_settings()
            expected = expected_alarms(settings, [m for _, m in messages])
            ignore = wallclock_rules(settings)
            result = await settle(kafka_bootstrap, p, env["AIRGRID_APP_ID"], expected, ignore, seen, 90)
            await asyncio.sleep(12)  # the short policy's whole chain: 4 s + 2 x 3 s
            result = audit(expected, seen.of(p + "alarms"), seen.of(p + "task-events"), ignore)
            print(
                f"\nkills={kills} recovery_s={[round(r, 1) for r in recoveries]} "
                f"expected_alarms={result.expected} lost={len(result.lost)} "
                f"duplicated={result.duplicated} conflicting={len(result.conflicting)} "
                f"task_conflicts={len(result.task_conflicts)} steps_twice={len(result.steps_twice)}"
            )
            assert result.clean, result.explain()
            dispatched = [e for e in seen.of(p + "task-events") if e["type"] == "dispatched"]
            by_task: dict[str, int] = {}
            for e in dispatched:
                by_task[e["task_id"]] = by_task.get(e["task_id"], 0) + 1
            opened = {
                a["alarm_id"] for a in seen.of(p + "alarms") if a["kind"] == "opened" and a["route"] == "grid"
            }
            assert by_task and len(by_task) <= len(opened)
            escalated = [
                e for e in seen.of(p + "task-events") if e["type"] == "escalated" and e["level"] == 1
            ]
            assert {e["task_id"] for e in escalated} == set(by_task)
            # the SQL projection (SQLite in the data dir) agrees with the topics: all, once
            url = f"sqlite:///{tmp_path / 'state' / 'airgrid.db'}"
            gaps = await projection_gaps(url, seen.of(p + "alarms"), seen.of(p + "task-events"), 60)
            assert gaps == {}, gaps
    finally:
        worker.stop()
