"""The region stage under kill -9 (issue 16): a worker killed while the region decides, and
restarted, loses no alarm's decision, decides none two ways, and creates no task twice."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.test_regional_dispatch import POLICY, RULES, STATIONS, directory, reading
from tests.helpers import Collector, Worker, internal_refusals, produce, worker_env

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.timeout(400)]


async def test_a_kill_while_the_region_decides_loses_and_doubles_nothing(
    kafka_bootstrap: str, uid: str, tmp_path: Path
) -> None:
    (tmp_path / "rules.toml").write_text(RULES)
    (tmp_path / "policy.toml").write_text(POLICY.replace('dispatch = "none"', 'dispatch = "level2"'))
    env = worker_env(
        kafka_bootstrap,
        uid,
        tmp_path / "state",
        AIRGRID_GRID_FILE=str(directory(tmp_path / "grids.json")),
        AIRGRID_RULES_FILE=str(tmp_path / "rules.toml"),
        AIRGRID_POLICY_FILE=str(tmp_path / "policy.toml"),
        AIRGRID_SESSION_TIMEOUT_SECONDS="6",
    )
    prefix = env["AIRGRID_TOPIC_PREFIX"]
    t = {
        n: prefix + n
        for n in ("readings", "alarms", "task-events", "regions", "commands.dlq", "readings.dlq")
    }
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    try:
        async with Collector(kafka_bootstrap, list(t.values())) as seen:
            start = (datetime.now(UTC) - timedelta(hours=9)).replace(minute=0, second=0, microsecond=0)
            # hour 0 clean; 1-4 haze at 120 with S5 at 300 (a local source); 5-6 clean again
            haze = dict.fromkeys(STATIONS, 120.0) | {"S5": 300.0}
            levels = [dict.fromkeys(STATIONS, 30.0)] + [haze] * 4 + [dict.fromkeys(STATIONS, 30.0)] * 2
            messages = [
                reading(s, start + timedelta(hours=h, minutes=10 * i), pm25[s])
                for h, pm25 in enumerate(levels)
                for i in range(1, 7)
                for s in STATIONS
            ]
            await produce(kafka_bootstrap, t["readings"], messages)
            await seen.wait_for(t["regions"], lambda r: r["kind"] == "hour", 60, "a first region hour")
            worker.kill()  # while the region stage works through the hours
            worker.start()
            last = (start + timedelta(hours=len(levels) - 2)).isoformat().replace("+00:00", "Z")
            await seen.wait_for(
                t["regions"], lambda r: r["kind"] == "hour" and r["hour_start"] >= last, 120, "the last hour"
            )
            await asyncio.sleep(3)  # the owner applies the last decisions

            opened = {
                a["alarm_id"] for a in seen.of(t["alarms"]) if a["kind"] == "opened" and a["route"] == "grid"
            }
            actions: dict[str, set[str]] = defaultdict(set)
            for d in seen.of(t["regions"]):
                if d["kind"] == "dispatch":
                    actions[d["alarm_id"]].add(d["action"])
            assert opened and opened <= set(actions), sorted(opened - set(actions))  # every alarm decided
            assert all(len(a) == 1 for a in actions.values()), {
                k: v for k, v in actions.items() if len(v) > 1
            }
            hours: dict[str, set[tuple]] = defaultdict(set)
            for r in seen.of(t["regions"]):
                if r["kind"] == "hour":
                    hours[r["hour_start"]].add((r["episode"], r["background"]["pm25"], r["reporting"]))
            assert len(hours) == len(levels) and all(len(v) == 1 for v in hours.values()), hours
            events = seen.of(t["task-events"])
            versions: dict[str, list[int]] = defaultdict(list)
            for e in events:
                versions[e["task_id"]].append(e["version"])
            for task_id, seen_versions in versions.items():  # a copy has the same version, never a new one
                assert sorted(set(seen_versions)) == list(range(1, max(seen_versions) + 1)), task_id
            dispatched = {e["task_id"]: e for e in events if e["type"] == "dispatched"}
            region_tasks = [e for e in dispatched.values() if e["station_id"] == "L2-A"]
            local = [e for e in dispatched.values() if e["station_id"] == "S5"]
            assert len(region_tasks) == 1 and region_tasks[0]["level"] == 2
            assert len(local) == 1 and local[0]["note"] == "pm25_local_excess"
            joined = {e["alarm_id"] for e in events if e["type"] in ("dispatched", "alarm_joined")}
            region = {a for a, acts in actions.items() if acts == {"region"}}
            assert region <= joined  # every alarm sent to the region's task is in it
            assert internal_refusals(seen.of(t["commands.dlq"]) + seen.of(t["readings.dlq"])) == []
    finally:
        code = worker.stop()
    assert code == 0, worker.tail()
