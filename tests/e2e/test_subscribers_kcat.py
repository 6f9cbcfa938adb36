"""A subscriber not written in Python: kcat reads ``alarms`` and ``task-events`` from the real
broker after the real worker produced them, and every message validates against the committed
JSON Schemas. Then the operator's view of the same run: the SQLite projection, ``airgrid tasks``,
and ``airgrid replay`` of every topic from the beginning, which changes no row."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

from airgrid.config.settings import DATA_DIR
from airgrid.domain.directory import Directory
from airgrid.sinks.sql import make_engine
from tests.e2e.test_alarm_loop import feedback, reading
from tests.helpers import REPO, Collector, Worker, produce, short_policy, worker_env
from tests.helpers import airgrid_cli as airgrid
from tests.sql_support import dump

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.timeout(300)]
DIRECTORY = Directory.load(DATA_DIR / "grids.json")
SCHEMAS = REPO / "schemas"


def kcat(bootstrap: str, topic: str) -> list[dict]:
    exe = shutil.which("kcat")
    assert exe, "kcat is not installed: run scripts/ensure_tools.sh (Debian package kcat)"
    out = subprocess.run(
        [exe, "-C", "-J", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def validator(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


async def test_kcat_reads_schema_valid_alarms_and_task_events(
    kafka_bootstrap: str, uid: str, tmp_path: Path
) -> None:
    env = worker_env(
        kafka_bootstrap,
        uid,
        tmp_path / "state",
        AIRGRID_POLICY_FILE=str(short_policy(tmp_path / "policy.toml", deadline=2, before=1, escalate=1.5)),
    )
    prefix = env["AIRGRID_TOPIC_PREFIX"]
    t = {n: prefix + n for n in ("readings", "alarms", "feedback", "task-events", "feedback.rejected")}
    lineage = DIRECTORY.lineage("ST001")
    assert lineage is not None
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    try:
        async with Collector(kafka_bootstrap, [t["alarms"], t["task-events"]]) as seen:
            hour = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
            await produce(
                kafka_bootstrap,
                t["readings"],
                [(b"ST001", reading("ST001", hour + timedelta(minutes=10 * i), 130.0)) for i in range(1, 7)],
            )
            dispatched = await seen.wait_for(
                t["task-events"], lambda e: e["type"] == "dispatched", 30, "dispatch"
            )
            task_id = dispatched["task_id"]
            await seen.wait_for(t["task-events"], lambda e: e["type"] == "escalated", 30, "an escalation")
            w3 = f"W-{lineage.l3}-1"
            await produce(
                kafka_bootstrap,
                t["feedback"],
                [
                    (task_id.encode(), feedback("k-1", task_id, w3, "acknowledge")),
                    (task_id.encode(), feedback("k-2", task_id, w3, "on_site")),
                    (
                        task_id.encode(),
                        feedback(
                            "k-3",
                            task_id,
                            w3,
                            "submit",
                            findings={
                                "source_found": True,
                                "source_type": "catering_fumes",
                                "sources_inspected": 2,
                            },
                        ),
                    ),
                    (task_id.encode(), feedback("k-4", task_id, f"W-{lineage.l2}", "approve")),
                    (b"x", b"not feedback"),
                ],
            )
            await seen.wait_for(t["task-events"], lambda e: e["type"] == "closed", 30, "closure")
            python_view = {n: len(seen.of(t[n])) for n in ("alarms", "task-events")}

        alarms = kcat(kafka_bootstrap, t["alarms"])
        events = kcat(kafka_bootstrap, t["task-events"])
        assert len(alarms) == python_view["alarms"] >= 1
        assert len(events) == python_view["task-events"] >= 7
        for name, msgs in (("alarm-event", alarms), ("task-event", events)):
            v = validator(name)
            for m in msgs:
                payload = json.loads(m["payload"])
                errors = [e.message for e in v.iter_errors(payload)]
                assert not errors, f"{name} at offset {m['offset']}: {errors}"
                assert m["key"] == payload["station_id"]  # the documented key
        types = [json.loads(m["payload"])["type"] for m in events]
        assert {
            "dispatched",
            "reminded",
            "escalated",
            "acknowledged",
            "on_site",
            "feedback_submitted",
            "closed",
        } <= set(types)

        # the operator's view of the same run
        db = tmp_path / "state" / "airgrid.db"
        engine = make_engine(f"sqlite:///{db}")
        await _wait_rows(
            engine, task_id, len([e for e in events if json.loads(e["payload"])["task_id"] == task_id])
        )
    finally:
        assert worker.stop() == 0, worker.tail()
    before = dump(engine)
    assert len(before["feedback"]) == 4 and len(before["alarms"]) == len(alarms)
    shown = airgrid(env, "tasks", "show", task_id)
    assert shown.returncode == 0, shown.stderr
    assert "closed" in shown.stdout and "approve" in shown.stdout and w3 in shown.stdout
    listed = airgrid(env, "tasks", "list", "--grid", lineage.l2, "--state", "closed", "--format", "csv")
    assert listed.returncode == 0 and task_id in listed.stdout, listed
    for topic in ("task-events", "alarms", "feedback", "feedback.rejected", "readings.dlq"):
        replay = airgrid(env, "replay", "--topic", topic)
        assert replay.returncode == 0, replay.stderr
    assert dump(engine) == before
    engine.dispose()


async def _wait_rows(engine: object, task_id: str, n: int, timeout: float = 20) -> None:
    import asyncio
    import time

    from sqlalchemy import text

    deadline = time.monotonic() + timeout
    got = -1
    while time.monotonic() < deadline:
        try:
            with engine.connect() as conn:  # type: ignore[attr-defined]
                got = conn.execute(
                    text("select count(*) from task_events where task_id = :t"), {"t": task_id}
                ).scalar()
                fb = conn.execute(text("select count(*) from feedback")).scalar()
            if got == n and fb == 4:
                return
        except Exception:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"projection has {got} of {n} events of {task_id}")
