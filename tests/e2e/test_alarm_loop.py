"""The whole loop on the real broker with the real worker process:
readings -> alarm -> task for the level-3 grid -> reminders -> escalation to level 2, then 1 ->
feedback closes it -> the SQLite projection holds the closed task and its full history.
Malformed readings land in the DLQ while valid ones keep flowing. The readings carry wind: the
alarm carries it and the dispatch lists the grids upwind of the station (default settings)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from airgrid.config.settings import DATA_DIR
from airgrid.domain.directory import Directory
from tests.helpers import Collector, Worker, produce, short_policy, worker_env

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.timeout(300)]

DIRECTORY = Directory.load(DATA_DIR / "grids.json")


NORTH_WEST = {"speed": 3.0, "direction": 315.0}  # the wind comes from the north-west


def reading(
    station: str, at: datetime, pm25: float, interval_s: int = 600, wind: dict[str, float] | None = None
) -> bytes:
    return orjson.dumps(
        {
            "schema_version": 1,
            "station_id": station,
            "observed_at": at.isoformat(),
            "interval_s": interval_s,
            "values": {"pm25": pm25, "pm10": pm25 * 1.5, "no2": 30.0, "so2": 8.0, "co": 0.6, "o3": 60.0},
            **({} if wind is None else {"wind": wind}),
        }
    )


def feedback(fid: str, task_id: str, worker: str, action: str, **extra: object) -> bytes:
    return orjson.dumps(
        {
            "schema_version": 1,
            "feedback_id": fid,
            "task_id": task_id,
            "worker_id": worker,
            "action": action,
            "at": datetime.now(UTC).isoformat(),
            **extra,
        }
    )


async def test_readings_to_closed_task_with_escalation(
    kafka_bootstrap: str, uid: str, tmp_path: Path
) -> None:
    env = worker_env(
        kafka_bootstrap,
        uid,
        tmp_path / "state",
        AIRGRID_POLICY_FILE=str(short_policy(tmp_path / "policy.toml")),
    )
    prefix = env["AIRGRID_TOPIC_PREFIX"]
    t = {
        name: prefix + name
        for name in ("readings", "readings.dlq", "alarms", "feedback", "feedback.rejected", "task-events")
    }
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    lineage = DIRECTORY.lineage("ST001")
    other = DIRECTORY.lineage("ST002")
    assert lineage is not None and other is not None and other.l3 != lineage.l3
    try:
        async with Collector(kafka_bootstrap, list(t.values())) as seen:
            hour = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
            good: list[tuple[bytes | None, bytes]] = []
            bad: list[tuple[bytes | None, bytes]] = [
                (b"ST001", b"{not json"),
                (None, b"\xff\xfe\x00\x01 random bytes"),
                (
                    b"ST001",
                    b'{"schema_version": 1, "station_id": "ST001", "observed_at": '
                    b'"2026-01-01T00:00:00+08:00", "values": {"pm25": NaN}}',
                ),
                (
                    b"ST001",
                    b'{"schema_version": 1, "station_id": "ST001", "observed_at": '
                    b'"2026-01-01T00:00:00+08:00", "values": {"pm25": "Infinity"}}',
                ),
                (b"NOPE", reading("NOPE", hour + timedelta(minutes=10), 50)),
            ]
            for i in range(1, 7):  # one full hour of 10-minute readings, PM2.5 above 75
                at = hour + timedelta(minutes=10 * i)
                good.append((b"ST001", reading("ST001", at, 120.0, wind=NORTH_WEST)))
                good.append((b"ST002", reading("ST002", at, 20.0)))
                if i <= len(bad):
                    good.append(bad[i - 1])
            await produce(kafka_bootstrap, t["readings"], good)

            alarm = await seen.wait_for(
                t["alarms"], lambda a: a["station_id"] == "ST001", 30, "the PM2.5 alarm"
            )
            assert (alarm["kind"], alarm["rule_id"], alarm["value"]) == (
                "opened",
                "pm25_1h_exceedance",
                120.0,
            )
            dispatched = await seen.wait_for(
                t["task-events"], lambda e: e["type"] == "dispatched", 30, "dispatch"
            )
            task_id = dispatched["task_id"]
            assert dispatched["grid_id"] == lineage.l3 and dispatched["level"] == 3
            assert dispatched["station_id"] == "ST001"
            assert alarm["wind"] == NORTH_WEST and alarm["schema_version"] == 3
            upwind = list(DIRECTORY.upwind("ST001", 315.0, 60.0, 5.0))  # the default sector, radius
            assert upwind and dispatched["upwind"] == upwind == dispatched["co_notified"]

            # no feedback: reminder, overdue reminder, then level 2, then level 1
            top = await seen.wait_for(
                t["task-events"],
                lambda e: e["type"] == "escalated" and e["level"] == 1,
                40,
                "escalation to level 1",
            )
            assert top["grid_id"] == lineage.l1
            chain = [(e["type"], e["level"], e["grid_id"]) for e in seen.of(t["task-events"])]
            assert chain == [
                ("dispatched", 3, lineage.l3),
                ("reminded", 3, lineage.l3),
                ("reminded", 3, lineage.l3),
                ("escalated", 2, lineage.l2),
                ("escalated", 1, lineage.l1),
            ]

            outsider = f"W-{other.l3}-1"
            await produce(
                kafka_bootstrap,
                t["feedback"],
                [
                    (task_id.encode(), feedback("fb-x", task_id, outsider, "acknowledge")),
                    (b"x", feedback("fb-y", "T-ST001-209901010000", f"W-{lineage.l3}-1", "acknowledge")),
                    (b"x", b"not feedback at all"),
                    (task_id.encode(), feedback("fb-1", task_id, f"W-{lineage.l3}-1", "acknowledge")),
                    (
                        task_id.encode(),
                        feedback(
                            "fb-2",
                            task_id,
                            f"W-{lineage.l3}-1",
                            "submit",
                            findings={
                                "source_found": True,
                                "source_type": "construction_dust",
                                "measures": "site watered, work stopped",
                                "sources_inspected": 3,
                            },
                        ),
                    ),
                    (task_id.encode(), feedback("fb-3", task_id, f"W-{lineage.l2}", "approve")),
                ],
            )
            closed = await seen.wait_for(t["task-events"], lambda e: e["type"] == "closed", 30, "closure")
            assert closed["worker_id"] == f"W-{lineage.l2}" and closed["state"] == "closed"

            rejected = {r["reason_code"] for r in seen.of(t["feedback.rejected"])}
            assert rejected == {"wrong_grid", "unknown_task", "not_json"}
            wrong = next(r for r in seen.of(t["feedback.rejected"]) if r["reason_code"] == "wrong_grid")
            assert other.l3 in wrong["reason"] and wrong["origin"]["topic"] == t["feedback"]

            dlq = await _wait_len(seen, t["readings.dlq"], 5)
            assert sorted(d["reason_code"] for d in dlq) == sorted(
                ["not_json", "not_json", "not_json", "invalid", "unknown_station"]
            )
            assert any("values.pm25" in d["reason"] for d in dlq)
            assert all(d["origin"]["topic"] == t["readings"] and d["origin"]["offset"] >= 0 for d in dlq)
            assert worker.metric("airgrid_readings_total", outcome="accepted") == 12
            assert worker.metric("airgrid_readings_total", outcome="rejected") == 5
            assert worker.metric("airgrid_escalations_total") == 2

            history = await _wait_projection(tmp_path / "state" / "airgrid.db", task_id)
            assert [h[0] for h in history] == list(range(1, len(history) + 1))
            assert [h[1] for h in history] == [
                "dispatched",
                "reminded",
                "reminded",
                "escalated",
                "escalated",
                "acknowledged",
                "feedback_submitted",
                "departments_notified",
                "closed",
            ]
            with sqlite3.connect(tmp_path / "state" / "airgrid.db") as db:
                row = db.execute(
                    "select state, level, grid_l3, version from tasks where task_id = ?", (task_id,)
                ).fetchone()
            assert row == ("closed", 1, lineage.l3, len(history))
    finally:
        code = worker.stop()
    assert code == 0, worker.tail()


async def _wait_len(seen: Collector, topic: str, n: int, timeout: float = 20) -> list[dict]:
    deadline = time.monotonic() + timeout
    while len(seen.of(topic)) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert len(seen.of(topic)) == n, seen.of(topic)
    return seen.of(topic)


async def _wait_projection(db_path: Path, task_id: str, timeout: float = 20) -> list[tuple]:
    deadline = time.monotonic() + timeout
    rows: list[tuple] = []
    while time.monotonic() < deadline:
        if db_path.exists():
            with sqlite3.connect(db_path) as db:
                rows = db.execute(
                    "select version, type from task_events where task_id = ? order by version", (task_id,)
                ).fetchall()
            if rows and rows[-1][1] == "closed":
                return rows
        await asyncio.sleep(0.2)
    raise AssertionError(f"projection of {task_id} incomplete: {rows}")
