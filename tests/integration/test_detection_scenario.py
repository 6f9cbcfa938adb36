"""A three-day scenario for three stations replayed through the real worker on the real broker:
a diurnal pattern, one pollution episode (ST001, 10-minute readings), a sensor fault (ST002:
PM2.5 above PM10, then a flat-lined O3), a station going silent (ST003), a late reading within the
grace, one beyond it, duplicates and bad input. The alarms on the topic must be exactly the ones
the pure engine gives for the same messages, and the episodes must be the ones the scenario holds.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from airgrid.config.settings import DATA_DIR
from airgrid.domain.detection import engine
from airgrid.domain.detection.compiled import compile_rules
from airgrid.domain.detection.state import StationState
from airgrid.domain.rules import load_rules
from airgrid.models.readings import Reading
from tests.helpers import Collector, Worker, produce, worker_env

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
BASE = END - timedelta(hours=72)
EPISODE = range(30, 40)  # ST001's pollution episode, hours after BASE
FAULT = range(40, 44)  # ST002 reports PM2.5 far above PM10
FLAT = range(50, 64)  # ST002's O3 stuck at one value
ST003_STOPS = 36


def message(station: str, end: datetime, interval_s: int, values: dict[str, float]) -> bytes:
    body = {
        "schema_version": 1,
        "station_id": station,
        "observed_at": end.isoformat(),
        "interval_s": interval_s,
    }
    return orjson.dumps({**body, "values": values})


def clean(rng: random.Random, hour: float, base: float) -> dict[str, float]:
    diurnal = 1 + 0.3 * math.cos((hour % 24 - 8) / 24 * 2 * math.pi)
    pm25 = round(base * diurnal * rng.uniform(0.9, 1.1), 1)
    return {
        "pm25": pm25,
        "pm10": round(pm25 * rng.uniform(1.4, 1.8), 1),
        "so2": round(rng.uniform(4, 12), 1),
        "no2": round(rng.uniform(20, 50), 1),
        "co": round(rng.uniform(0.4, 1.0), 2),
        "o3": round(rng.uniform(30, 90), 1),
    }


def scenario() -> tuple[list[tuple[bytes, bytes]], dict[str, Any]]:
    """The messages in the order they are produced, and facts about them."""
    rng = random.Random(2026)
    timeline: list[tuple[datetime, str, bytes]] = []
    held: bytes | None = None
    for k in range(1, 72 * 6 + 1):  # ST001: 10-minute readings
        end = BASE + timedelta(minutes=10 * k)
        h = (k - 1) // 6
        values = clean(rng, h, 30)
        if h in EPISODE:
            values["pm25"] = round(rng.uniform(150, 175), 1)
            values["pm10"] = round(values["pm25"] * 1.5, 1)
        msg = message("ST001", end, 600, values)
        if k == 21 * 6:  # the last reading of hour 20 arrives after the first one of hour 21
            held = msg
            continue
        timeline.append((end, "ST001", msg))
        if k == 21 * 6 + 1:
            assert held is not None
            timeline.append((end, "ST001", held))
        if k == 50:
            timeline.append((end, "ST001", msg))  # a duplicate
    for h in range(72):  # ST002, ST003: hourly readings
        end = BASE + timedelta(hours=h + 1)
        values = clean(rng, h, 25)
        if h in FAULT:
            values["pm25"], values["pm10"] = 200.0, 50.0
        if h in FLAT:
            values["o3"] = 42.0
        timeline.append((end, "ST002", message("ST002", end, 3600, values)))
        if h == 12:
            timeline.append((end, "ST002", message("ST002", end, 3600, values)))  # a duplicate
        if h < ST003_STOPS:
            timeline.append((end, "ST003", message("ST003", end, 3600, clean(rng, h, 20))))
    timeline.sort(key=lambda t: t[0])  # stable: the held reading stays after its successor
    msgs = [(st.encode(), body) for _, st, body in timeline]
    too_late = message("ST001", BASE + timedelta(minutes=5), 300, {"pm25": 500.0})
    bad = [
        (b"ST002", message("ST002", END, 600, {"pm25": 10.0}).replace(b'"pm25"', b'"pm1"')),
        (
            b"ST002",
            orjson.dumps(
                {**orjson.loads(message("ST002", END, 600, {"co": 800.0})), "units": {"co": "ug/m3"}}
            ),
        ),
        (b"ST002", message("ST002", END + timedelta(days=2), 600, {"pm25": 10.0})),
        (b"ST002", b'{"schema_version": 1, "station_id": "ST002", "values": {"pm25": NaN}}'),
    ]
    return [*msgs, (b"ST001", too_late), *bad], {"valid": msgs}


def expected_alarms(valid: list[tuple[bytes, bytes]], rules_path: Path) -> dict[str, list[tuple]]:
    """The pure engine over the same messages: what the worker must publish (silence aside)."""
    rs = compile_rules(load_rules(rules_path), grace_s=900)
    states: dict[str, StationState] = defaultdict(StationState)
    out: dict[str, list[tuple]] = defaultdict(list)
    now = datetime.now(UTC).timestamp()
    for _, body in valid:
        r = Reading.model_validate_json(body)
        _, events, _ = engine.evaluate(states[r.station_id], r, rs, now)
        out[r.station_id] += [key(e.model_dump(mode="json")) for e in events]
    return {k: v for k, v in out.items() if v}


def key(a: dict[str, Any]) -> tuple:
    return (a["event_id"], a["kind"], a["rule_id"], a["pollutant"], a["value"], a["window_start"], a["aqi"])


async def test_multi_day_scenario_gives_exactly_the_expected_alarms(
    kafka_bootstrap: str, uid: str, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    shipped = (DATA_DIR / "rules.toml").read_text(encoding="utf-8")
    # Silence by event time after 1.5 h (ST001/ST002 report until the last full hour), and by
    # arrival after 10 s: the replay arrives all at once, ST003's last reading half way through.
    rules.write_text(re.sub(r"after_s = 3600", "after_s = 5400\narrival_s = 10", shipped), encoding="utf-8")
    env = worker_env(kafka_bootstrap, uid, tmp_path / "state", AIRGRID_RULES_FILE=str(rules))
    prefix = env["AIRGRID_TOPIC_PREFIX"]
    t = {n: prefix + n for n in ("readings", "readings.dlq", "alarms")}
    messages, facts = scenario()
    expected = expected_alarms(facts["valid"], rules)
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    try:
        async with Collector(kafka_bootstrap, list(t.values())) as seen:
            began = time.monotonic()
            await produce(kafka_bootstrap, t["readings"], messages)
            await seen.wait_for(
                t["alarms"], lambda a: a["rule_id"] == "station_silent", 60, "ST003's silence"
            )
            dlq = await wait_count(seen, t["readings.dlq"], 5)
            total = sum(len(v) for v in expected.values()) + 1
            await wait_count(seen, t["alarms"], total, timeout=60)
            await asyncio.sleep(12)  # longer than arrival_s: no other station may fall silent
            replay_s = time.monotonic() - began
            got: dict[str, list[tuple]] = defaultdict(list)
            silent = []
            for a in seen.of(t["alarms"]):
                (silent if a["rule_id"] == "station_silent" else got[a["station_id"]]).append(a)
                if a["rule_id"] != "station_silent":
                    got[a["station_id"]][-1] = key(a)
            assert dict(got) == dict(expected)

            # the episodes the scenario holds
            st1 = [e for e in seen.of(t["alarms"]) if e["station_id"] == "ST001"]
            pm = [e for e in st1 if e["rule_id"] == "pm25_1h_exceedance"]
            assert len({e["alarm_id"] for e in pm}) == 1
            assert (pm[0]["kind"], pm[0]["window_start"]) == (
                "opened",
                iso(BASE + timedelta(hours=EPISODE[0])),
            )
            assert pm[0]["aqi"] is not None and pm[0]["aqi_standard"] == "hj633-2026"
            assert pm[-1]["kind"] == "cleared" and all(e["route"] == "grid" for e in st1)
            assert {e["rule_id"] for e in st1 if e["kind"] == "opened"} >= {
                "pm25_1h_severe",
                "pm25_sustained",
            }
            st2 = [e for e in seen.of(t["alarms"]) if e["station_id"] == "ST002"]
            assert {(e["rule_id"], e["pollutant"], e["kind"]) for e in st2 if e["kind"] != "updated"} == {
                ("impossible", "pm25", "opened"),
                ("impossible", "pm25", "cleared"),
                ("flatline", "o3", "opened"),
                ("flatline", "o3", "cleared"),
            }
            assert all(e["route"] == "operations" for e in st2)  # the fault pages no grid worker
            assert [(a["station_id"], a["kind"], a["window_start"]) for a in silent] == [
                ("ST003", "opened", iso(BASE + timedelta(hours=ST003_STOPS)))
            ]
            assert silent[0]["route"] == "operations"

            codes = sorted(d["reason_code"] for d in dlq)
            assert codes == ["future", "invalid", "invalid", "not_json", "too_late"]
            late = next(d for d in dlq if d["reason_code"] == "too_late")
            assert "late grace of 900 s" in late["reason"] and late["origin"]["topic"] == t["readings"]
            assert any("unit 'ug/m3' is not possible for co" in d["reason"] for d in dlq)
            assert worker.metric("airgrid_readings_total", outcome="late") == 1
            assert worker.metric("airgrid_readings_total", outcome="late_folded") == 1
            assert worker.metric("airgrid_readings_total", outcome="duplicate") == 2
            assert worker.metric("airgrid_readings_total", outcome="accepted") == len(facts["valid"]) - 3
            assert worker.metric("airgrid_dlq_total", reason="too_late") == 1
            print(f"\nscenario: {len(messages)} messages, {total} alarm events in {replay_s:.1f} s")
    finally:
        code = worker.stop()
    assert code == 0, worker.tail()


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


async def wait_count(seen: Collector, topic: str, n: int, timeout: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(seen.of(topic)) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert len(seen.of(topic)) >= n, f"{topic}: {len(seen.of(topic))} of {n}: {seen.of(topic)[-3:]}"
    return seen.of(topic)


async def test_a_warning_switches_the_rule_profile_without_a_restart(
    kafka_bootstrap: str, uid: str, tmp_path: Path
) -> None:
    """PM2.5 at 60 for an hour is no alarm under the normal profile (75) but is one under the red
    profile (75 x 0.7 = 52.5): a red warning on the ``warnings`` topic switches it live."""
    from airgrid.domain.directory import Directory

    city = Directory.load(DATA_DIR / "grids.json").city
    env = worker_env(kafka_bootstrap, uid, tmp_path / "state")
    prefix = env["AIRGRID_TOPIC_PREFIX"]
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    start = END - timedelta(hours=6)

    def hour(station: str, h: int) -> tuple[bytes, bytes]:
        values = {"pm25": 60.0, "pm10": 90.0, "no2": 30.0, "o3": 50.0}
        return station.encode(), message(station, start + timedelta(hours=h), 3600, values)

    try:
        async with Collector(kafka_bootstrap, [prefix + "alarms"]) as seen:
            await produce(kafka_bootstrap, prefix + "readings", [hour("ST001", 1)])
            await asyncio.sleep(3)
            assert seen.of(prefix + "alarms") == []
            warning = {
                "schema_version": 1,
                "city": city,
                "level": "red",
                "issued_at": datetime.now(UTC).isoformat(),
            }
            await produce(kafka_bootstrap, prefix + "warnings", [(city.encode(), orjson.dumps(warning))])
            deadline = time.monotonic() + 30
            h = 2
            while time.monotonic() < deadline and not seen.of(prefix + "alarms"):
                await produce(kafka_bootstrap, prefix + "readings", [hour("ST001", h)])
                h += 1
                await asyncio.sleep(1)
            (alarm, *_) = seen.of(prefix + "alarms")
            assert (alarm["rule_id"], alarm["kind"], alarm["warning_level"], alarm["threshold"]) == (
                "pm25_1h_exceedance",
                "opened",
                "red",
                52.5,
            )
    finally:
        code = worker.stop()
    assert code == 0, worker.tail()
