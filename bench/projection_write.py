"""Projection write rate: N task events (in batches, as the agent writes them) into SQLite and,
when AIRGRID_TEST_POSTGRES_URL is set, PostgreSQL. Prints events/s for a first write and a replay.

    .venv/bin/python bench/projection_write.py [--events 10000] [--batch 500]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text

from airgrid.models.tasks import Lineage, TaskEvent
from airgrid.sinks.sql import SqlProjection, make_engine

TYPES = [
    ("dispatched", "dispatched"),
    ("reminded", "dispatched"),
    ("acknowledged", "acknowledged"),
    ("on_site", "on_site"),
    ("feedback_submitted", "feedback_submitted"),
    ("closed", "closed"),
]


def events(n: int) -> list[TaskEvent]:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    out = []
    lineage = Lineage(l3="L3-010102", l2="L2-0101", l1="L1-01")
    for i in range(n):
        task, step = divmod(i, len(TYPES))
        etype, state = TYPES[step]
        at = start + timedelta(minutes=task * 7 + step)
        tid = f"T-ST{task % 48:03d}-{at:%Y%m%d%H%M}"
        out.append(
            TaskEvent.model_validate(
                {
                    "event_id": f"{tid}:{step + 1}", "task_id": tid, "version": step + 1, "type": etype,
                    "station_id": f"ST{task % 48:03d}", "state": state, "severity": "major", "level": 3,
                    "grid_id": "L3-010102", "lineage": lineage, "at": at,
                    "deadline_at": at + timedelta(days=1),
                }
            )
        )  # fmt: skip
    return out


def run(url: str, evs: list[TaskEvent], batch: int) -> tuple[float, float]:
    engine = make_engine(url)
    sink = SqlProjection(engine)
    sink.setup()
    rates = []
    for _ in range(2):  # first write, then a full replay (all conflicts)
        began = time.perf_counter()
        for i in range(0, len(evs), batch):
            sink.write([], evs[i : i + batch])
        rates.append(len(evs) / (time.perf_counter() - began))
    engine.dispose()
    return rates[0], rates[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--events", type=int, default=10_000)
    p.add_argument("--batch", type=int, default=500)
    a = p.parse_args()
    evs = events(a.events)
    for batch in sorted({a.batch, a.events}):
        with tempfile.TemporaryDirectory() as d:
            w, r = run(f"sqlite:///{d}/bench.db", evs, batch)
        print(f"sqlite      {a.events} events, batch {batch:>5}: write {w:8.0f} ev/s, replay {r:8.0f} ev/s")
        base = os.environ.get("AIRGRID_TEST_POSTGRES_URL")
        if base:
            name = f"airgrid_bench_{uuid.uuid4().hex[:8]}"
            admin = create_engine(base, isolation_level="AUTOCOMMIT")
            with admin.connect() as c:
                c.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                url = base.rsplit("/", 1)[0] + "/" + name
                w, r = run(url, evs, batch)
                print(
                    f"postgresql  {a.events} events, batch {batch:>5}: write {w:8.0f} ev/s, replay {r:8.0f}"
                )
            finally:
                with admin.connect() as c:
                    c.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
