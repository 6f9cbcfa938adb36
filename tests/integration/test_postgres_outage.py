"""The real worker's projection on PostgreSQL while its database goes away and comes back, or
hangs: writes are retried with backoff, the consumer never commits past unwritten events (even
when the worker is stopped during the outage), the rest of the pipeline does not wait for the
database, and afterwards the projection holds every task event that is on the topic: nothing
lost, nothing doubled."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from airgrid.config.settings import DATA_DIR
from airgrid.domain.directory import Directory
from tests.e2e.test_alarm_loop import feedback, reading
from tests.helpers import Collector, Worker, consumer_lag, produce, worker_env
from tests.sql_support import pg_database, postgres_url

__all__ = ["pg_database"]
pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.timeout(300)]
DIRECTORY = Directory.load(DATA_DIR / "grids.json")


class Outage:
    """Takes one database away (no new connections, current ones terminated) and back."""

    def __init__(self, url: str) -> None:
        self.name = make_url(url).database
        self.admin = create_engine(postgres_url(), isolation_level="AUTOCOMMIT")

    def begin(self) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false'))
            conn.execute(
                text("select pg_terminate_backend(pid) from pg_stat_activity where datname = :d"),
                {"d": self.name},
            )

    def end(self) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true'))


def projected(url: str) -> set[tuple[str, int]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {(r[0], r[1]) for r in conn.execute(text("select task_id, version from task_events"))}
    except Exception:
        return set()
    finally:
        engine.dispose()


async def wait_until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def on_topic(seen: Collector, prefix: str) -> set[tuple[str, int]]:
    """(task, version) of every task event on the topic so far."""
    return {(e["task_id"], e["version"]) for e in seen.of(prefix + "task-events")}


def caught_up(seen: Collector, prefix: str, url: str) -> bool:
    """Does the projection hold every task event on the topic so far?"""
    return on_topic(seen, prefix) <= projected(url)


async def dispatch_one(bootstrap: str, prefix: str, seen: Collector, url: str) -> str:
    """Polluted readings of ST001 until a task is dispatched and projected; its id."""
    hour = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    await produce(
        bootstrap,
        prefix + "readings",
        [(b"ST001", reading("ST001", hour + timedelta(minutes=10 * i), 130.0)) for i in range(1, 7)],
    )
    first = await seen.wait_for(prefix + "task-events", lambda e: e["type"] == "dispatched", 30, "dispatch")
    await wait_until(lambda: caught_up(seen, prefix, url), 30, "the dispatch in PostgreSQL")
    return str(first["task_id"])


async def test_projection_survives_a_database_outage(
    kafka_bootstrap: str, uid: str, tmp_path: Path, pg_database: str
) -> None:
    env = worker_env(kafka_bootstrap, uid, tmp_path / "state", AIRGRID_DATABASE_URL=pg_database)
    prefix = env["AIRGRID_TOPIC_PREFIX"]
    lineage = DIRECTORY.lineage("ST001")
    assert lineage is not None
    w3, w2 = f"W-{lineage.l3}-1", f"W-{lineage.l2}"
    outage = Outage(pg_database)
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    try:
        async with Collector(kafka_bootstrap, [prefix + "task-events"]) as seen:
            task = await dispatch_one(kafka_bootstrap, prefix, seen, pg_database)

            # 1. outage while the worker runs: the write is retried and lands once the db is back
            outage.begin()
            errors = worker.metric("airgrid_projection_errors_total")
            await produce(
                kafka_bootstrap, prefix + "feedback", [(b"k", feedback("o-1", task, w3, "acknowledge"))]
            )
            await seen.wait_for(prefix + "task-events", lambda e: e["type"] == "acknowledged", 30, "ack")
            await wait_until(
                lambda: worker.metric("airgrid_projection_errors_total") > errors, 30, "a failed write"
            )
            assert projected(pg_database) == set()  # unreachable: nothing can be read, nor written
            outage.end()
            await wait_until(lambda: caught_up(seen, prefix, pg_database), 60, "the retried write")

            # 2. outage, and the worker stops before the database is back: nothing is committed
            # past the unwritten events, so the next worker writes them
            outage.begin()
            errors = worker.metric("airgrid_projection_errors_total")
            await produce(
                kafka_bootstrap,
                prefix + "feedback",
                [
                    (b"k", feedback("o-2", task, w3, "submit", findings={"source_found": False})),
                    (b"k", feedback("o-3", task, w2, "approve")),
                ],
            )
            await seen.wait_for(prefix + "task-events", lambda e: e["type"] == "closed", 30, "closure")
            await wait_until(
                lambda: worker.metric("airgrid_projection_errors_total") > errors, 30, "a failed write"
            )
            assert worker.stop() == 0, worker.tail()
            outage.end()
            missing = on_topic(seen, prefix) - projected(pg_database)
            assert missing, "the outage should have left events unwritten"
            worker.start()
            await wait_until(
                lambda: caught_up(seen, prefix, pg_database), 60, f"the unwritten {sorted(missing)}"
            )
            rows, events = projected(pg_database), seen.of(prefix + "task-events")
            assert len(rows) == len(on_topic(seen, prefix)) == len(events)
        engine = create_engine(pg_database)
        with engine.connect() as conn:
            state = conn.execute(
                text("select state, version from tasks where task_id = :t"), {"t": task}
            ).one()
        engine.dispose()
        assert tuple(state) == ("closed", max(v for t, v in on_topic(seen, prefix) if t == task))
    finally:
        worker.stop()
        outage.end()
        outage.admin.dispose()


async def test_a_stuck_database_delays_only_the_projection(
    kafka_bootstrap: str, uid: str, tmp_path: Path, pg_database: str
) -> None:
    """A lock held elsewhere makes every projection write hang. The statement timeout turns the
    hang into errors that are retried with backoff; tasks go on being handled meanwhile."""
    env = worker_env(
        kafka_bootstrap,
        uid,
        tmp_path / "state",
        AIRGRID_DATABASE_URL=pg_database,
        AIRGRID_PROJECTION_STATEMENT_TIMEOUT_SECONDS="1",
    )
    prefix = env["AIRGRID_TOPIC_PREFIX"]
    group = env["AIRGRID_APP_ID"] + "-projection"
    lineage = DIRECTORY.lineage("ST001")
    assert lineage is not None
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    locker = create_engine(pg_database)
    try:
        async with Collector(kafka_bootstrap, [prefix + "task-events"]) as seen:
            task = await dispatch_one(kafka_bootstrap, prefix, seen, pg_database)
            before = len(seen.of(prefix + "task-events"))

            with locker.connect() as conn:
                conn.execute(text("lock table task_events in access exclusive mode"))
                errors = worker.metric("airgrid_projection_errors_total")
                await produce(
                    kafka_bootstrap,
                    prefix + "feedback",
                    [(b"k", feedback("s-1", task, f"W-{lineage.l3}-1", "acknowledge"))],
                )
                # the task moves on while the database hangs: only the projection waits
                await seen.wait_for(prefix + "task-events", lambda e: e["type"] == "acknowledged", 30, "ack")
                await wait_until(
                    lambda: worker.metric("airgrid_projection_errors_total") >= errors + 2,
                    30,
                    "two timed-out writes, retried",
                )
                lag = await consumer_lag(kafka_bootstrap, group, prefix + "task-events")
                committed = sum(c or 0 for c, _ in lag.values())
                assert sum(end for _, end in lag.values()) == before + 1
                assert committed <= before, f"committed past an unwritten event: {lag}"
                rows = conn.execute(text("select count(*) from task_events")).scalar_one()
                assert rows == before  # the lock holder sees the table: the ack is not in it
                conn.rollback()  # releases the lock

            await wait_until(lambda: caught_up(seen, prefix, pg_database), 60, "the ack after the lock")
            assert len(projected(pg_database)) == len(on_topic(seen, prefix)) == before + 1
            assert worker.proc is not None and worker.proc.poll() is None, worker.tail()
    finally:
        worker.stop()
        locker.dispose()
