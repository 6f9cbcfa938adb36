"""Regional episodes on the real broker with the real worker process (issue 16): five stations of
one level-2 region under the same haze open five exceedance alarms, and no level-3 grid gets a
task for them; one station far above the haze (a local source) gets the only level-3 task, from
its local-excess alarm. ``regions`` carries each hour's background and every alarm's decision."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from tests.helpers import Collector, Worker, produce, worker_env

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.timeout(300)]

STATIONS = [f"S{i}" for i in range(1, 6)]
RULES = """
version = "test"
[regional]
level = 2
min_stations = 3
[regional.episode]
pollutant = "pm25"
above = 75
share = 0.6
min_stations = 3

[[rules]]
id = "pm25_1h_exceedance"
pollutant = "pm25"
threshold = 75.0
clear_below = 60.0

[[rules]]
id = "pm25_local_excess"
kind = "local_excess"
pollutant = "pm25"
above_abs = 35
above_ratio = 0.5
hours = 2
"""
POLICY = """
default = "s"
[policies.s]
feedback_deadline_s = 3600
[regional]
dispatch = "none"
"""


def directory(path: Path) -> Path:
    grids = [
        {"id": "L1-A", "name": "city", "level": 1},
        {"id": "L2-A", "name": "district", "level": 2, "parent": "L1-A"},
    ]
    grids += [{"id": f"L3-{s}", "name": f"street {s}", "level": 3, "parent": "L2-A"} for s in STATIONS]
    workers = [{"id": f"W-{g['id']}", "name": g["name"], "grid": g["id"]} for g in grids]
    stations = [
        {"id": s, "name": s, "lon": 116.3 + i / 100, "lat": 39.9, "grid": f"L3-{s}"}
        for i, s in enumerate(STATIONS)
    ]
    path.write_text(
        json.dumps(
            {"schema_version": 1, "city": "test", "grids": grids, "workers": workers, "stations": stations}
        )
    )
    return path


def reading(station: str, at: datetime, pm25: float) -> tuple[bytes, bytes]:
    value = {
        "schema_version": 1,
        "station_id": station,
        "observed_at": at.isoformat(),
        "interval_s": 600,
        "values": {"pm25": pm25},
    }
    return station.encode(), orjson.dumps(value)


async def test_a_regional_episode_dispatches_no_level3_flood_but_the_local_source(
    kafka_bootstrap: str, uid: str, tmp_path: Path
) -> None:
    (tmp_path / "rules.toml").write_text(RULES)
    (tmp_path / "policy.toml").write_text(POLICY)
    env = worker_env(
        kafka_bootstrap,
        uid,
        tmp_path / "state",
        AIRGRID_GRID_FILE=str(directory(tmp_path / "grids.json")),
        AIRGRID_RULES_FILE=str(tmp_path / "rules.toml"),
        AIRGRID_POLICY_FILE=str(tmp_path / "policy.toml"),
    )
    prefix = env["AIRGRID_TOPIC_PREFIX"]
    t = {name: prefix + name for name in ("readings", "alarms", "task-events", "regions", "commands.dlq")}
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    try:
        async with Collector(kafka_bootstrap, list(t.values())) as seen:
            start = (datetime.now(UTC) - timedelta(hours=4)).replace(minute=0, second=0, microsecond=0)
            # hour 0 clean, hours 1 and 2 haze at 120 over the region with S5 at 300 (its own source)
            levels = [dict.fromkeys(STATIONS, 30.0)] + [dict.fromkeys(STATIONS, 120.0) | {"S5": 300.0}] * 2
            messages = [
                reading(s, start + timedelta(hours=h, minutes=10 * i), pm25[s])
                for h, pm25 in enumerate(levels)
                for i in range(1, 7)
                for s in STATIONS
            ]
            await produce(kafka_bootstrap, t["readings"], messages)

            local = await seen.wait_for(
                t["task-events"], lambda e: e["type"] == "dispatched", 60, "the local-excess task"
            )
            assert (local["station_id"], local["grid_id"], local["level"]) == ("S5", "L3-S5", 3)
            assert local["note"] == "pm25_local_excess"
            await seen.wait_for(
                t["regions"], lambda r: r["kind"] == "hour" and r["hour_start"] >= _iso(start, 2), 30
            )
            hours = [r for r in seen.of(t["regions"]) if r["kind"] == "hour"]
            decisions = [r for r in seen.of(t["regions"]) if r["kind"] == "dispatch"]
            assert [(h["episode"], h["background"]["pm25"], h["reporting"]) for h in hours] == [
                (False, 30.0, 5),
                (True, 120.0, 5),
                (True, 120.0, 5),
            ]
            assert hours[2]["local_excess"] == ["S5"] and hours[1]["share_above"] == 1.0
            opened = [a for a in seen.of(t["alarms"]) if a["kind"] == "opened"]
            exceedance = {a["alarm_id"] for a in opened if a["rule_id"] == "pm25_1h_exceedance"}
            assert len(exceedance) == 5  # subscribers still get every station's alarm
            suppressed = {d["alarm_id"] for d in decisions if d["action"] == "suppressed"}
            assert suppressed == exceedance  # ... and no level-3 grid gets a task for them
            assert [(d["station_id"], d["action"]) for d in decisions if d["action"] != "suppressed"] == [
                ("S5", "level3")
            ]
            dispatched = [e for e in seen.of(t["task-events"]) if e["type"] == "dispatched"]
            assert len(dispatched) == 1
            assert worker.metric("airgrid_region_dispatch_total", action="suppressed") == 5
            assert worker.metric("airgrid_region_dispatch_total", action="level3") == 1
            assert seen.of(t["commands.dlq"]) == []
    finally:
        code = worker.stop()
    assert code == 0, worker.tail()


def _iso(start: datetime, hours: int) -> str:
    return (start + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")
