"""Every alarm becomes a task, from a worker's very first start (issue 18).

A fresh app id has no table changelogs yet. If the consumer group forms before the client's
metadata shows them, Faust leaves them out of the assignment and every table write fails until
the next metadata refresh, minutes later; alarms were dead-lettered as ``internal`` meanwhile.
Here: fresh workers, started again and again, turn every opened alarm into a task; a worker whose
metadata hides the changelogs at the join (a fault injector) says so on ``/health``, rejoins once
they show, and loses nothing; internal errors are retried, never refused.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from airgrid.models.alarms import AlarmEvent
from tests.helpers import (
    REPO,
    Collector,
    Worker,
    internal_refusals,
    produce,
    untasked_alarms,
    worker_env,
)

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.timeout(400)]

STATIONS = ("ST001", "ST002", "ST003")
OUTPUTS = ("alarms", "task-events", "feedback.rejected", "alarms.dlq", "commands.dlq", "readings.dlq")


def hour_of_readings(station: str, hour: datetime, pm25: float) -> list[tuple[bytes | None, bytes]]:
    """Six 10-minute readings: one valid hour, its PM2.5 mean ``pm25``."""
    out: list[tuple[bytes | None, bytes]] = []
    for i in range(1, 7):
        at = hour + timedelta(minutes=10 * i)
        value = {"pm25": pm25, "pm10": pm25 * 1.4, "no2": 30.0, "so2": 8.0, "co": 0.6, "o3": 60.0}
        body = {"schema_version": 1, "station_id": station, "observed_at": at.isoformat()}
        out.append((station.encode(), orjson.dumps({**body, "interval_s": 600, "values": value})))
    return out


def alarm_event(station: str, n: int, at: datetime) -> tuple[bytes | None, bytes]:
    """An opened grid alarm as the detection stage writes it (straight to the owner)."""
    alarm_id = f"{station}:pm10_1h_exceedance:{n}"
    alarm = AlarmEvent(
        event_id=f"{alarm_id}:opened",
        alarm_id=alarm_id,
        kind="opened",
        station_id=station,
        rule_id="pm10_1h_exceedance",
        pollutant="pm10",
        severity="major",
        route="grid",
        value=400.0,
        threshold=150.0,
        period="1h",
        window_start=at - timedelta(hours=1),
        window_end=at,
        opened_at=at,
        emitted_at=at,
    )
    return station.encode(), orjson.dumps(alarm.model_dump(mode="json"))


async def wait_tasked(seen: Collector, prefix: str, opened_at_least: int, within: float) -> list[str]:
    """Wait until at least ``opened_at_least`` grid alarms opened and each became a task; return
    the alarm ids still without one when time is up."""
    alarms, events = prefix + "alarms", prefix + "task-events"
    deadline = time.monotonic() + within
    while True:
        opened = [a for a in seen.of(alarms) if a["kind"] == "opened" and a.get("route") == "grid"]
        missing = untasked_alarms(seen.of(alarms), seen.of(events))
        if (len(opened) >= opened_at_least and not missing) or time.monotonic() > deadline:
            return missing if len(opened) >= opened_at_least else [f"only {len(opened)} opened"]
        await asyncio.sleep(0.3)


def assert_no_internal_refusal(seen: Collector, prefix: str) -> None:
    for topic in ("feedback.rejected", "alarms.dlq", "commands.dlq", "readings.dlq"):
        assert internal_refusals(seen.of(prefix + topic)) == [], topic


async def test_fresh_workers_turn_every_opened_alarm_into_a_task(
    kafka_bootstrap: str, uid: str, tmp_path: Path
) -> None:
    hour = (datetime.now(UTC) - timedelta(hours=4)).replace(minute=0, second=0, microsecond=0)
    for run in range(3):
        extra = {}
        state = tmp_path / f"run{run}" / "state"
        if run == 2:  # no projection, and a data dir several levels deep that does not exist yet
            extra["AIRGRID_PROJECTION_ENABLED"] = "false"
            state = tmp_path / f"run{run}" / "not" / "yet" / "there"
        env = worker_env(kafka_bootstrap, f"{uid}r{run}", state, **extra)
        prefix = env["AIRGRID_TOPIC_PREFIX"]
        worker = Worker(env, tmp_path / f"worker{run}.log")
        worker.start()  # creates the topics and the changelogs: a first start of this app id
        try:
            async with Collector(kafka_bootstrap, [prefix + t for t in OUTPUTS]) as seen:
                readings = [m for st in STATIONS for m in hour_of_readings(st, hour, 140.0)]
                await produce(kafka_bootstrap, prefix + "readings", readings)
                missing = await wait_tasked(seen, prefix, len(STATIONS), 60)
                assert missing == [], f"run {run}: {missing}\n{worker.tail()}"
                assert_no_internal_refusal(seen, prefix)
            assert worker.metric("airgrid_internal_errors_total") == 0
            assert worker.metric("airgrid_tables_unusable") == 0
        finally:
            assert worker.stop() == 0, worker.tail()


async def test_changelogs_missing_from_metadata_at_the_join_are_noticed_and_repaired(
    kafka_bootstrap: str, uid: str, tmp_path: Path
) -> None:
    hide_s = 25.0
    env = worker_env(
        kafka_bootstrap,
        uid,
        tmp_path / "state",
        HIDE_CHANGELOGS_S=str(hide_s),
        AIRGRID_INTERNAL_RETRY_SECONDS="300",
    )
    prefix = env["AIRGRID_TOPIC_PREFIX"]
    worker = Worker(
        env,
        tmp_path / "worker.log",
        command=(sys.executable, str(REPO / "tests" / "e2e" / "faults" / "hidden_changelogs.py")),
    )
    began = time.monotonic()
    worker.spawn()
    statuses: list[tuple[float, int, str]] = []

    def look() -> int:
        assert worker.proc is not None and worker.proc.poll() is None, worker.tail()
        code, body = worker.health()
        if code:
            statuses.append((time.monotonic() - began, code, str(body.get("status"))))
        return code

    try:
        while not look():  # it answers once it created the topics and started
            assert time.monotonic() - began < 60, worker.tail()
            await asyncio.sleep(0.2)
        async with Collector(kafka_bootstrap, [prefix + t for t in OUTPUTS]) as seen:
            # while the tables cannot be written: readings for ingest, alarms for the owner
            now = datetime.now(UTC).replace(microsecond=0)
            hour = (now - timedelta(hours=4)).replace(minute=0, second=0)
            readings = [m for st in STATIONS for m in hour_of_readings(st, hour, 140.0)]
            await produce(kafka_bootstrap, prefix + "readings", readings)
            alarms = [alarm_event(st, i, now) for i, st in enumerate(("ST004", "ST005"))]
            await produce(kafka_bootstrap, prefix + "alarms", alarms)
            ready_at = None
            while time.monotonic() - began < hide_s + 90:
                if look() == 200:
                    ready_at = time.monotonic() - began
                    break
                await asyncio.sleep(0.5)
            assert ready_at is not None, f"never ready: {statuses[-5:]}\n{worker.tail()}"
            # not ready while the changelogs were hidden, and it said why
            assert ready_at >= hide_s - 1, statuses
            assert any(s == "tables_unusable" and c == 503 for _, c, s in statuses), statuses
            missing = await wait_tasked(seen, prefix, len(STATIONS) + 2, 60)
            assert missing == [], f"{missing}\n{worker.tail()}"
            assert_no_internal_refusal(seen, prefix)
        # the stages met the unusable tables and retried instead of refusing
        assert worker.metric("airgrid_internal_errors_total") > 0
        assert worker.metric("airgrid_tables_unusable") == 0
    finally:
        assert worker.stop() == 0, worker.tail()
