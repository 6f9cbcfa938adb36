"""The owner's commit protocol without a broker: tables are dicts, topics record what they send.

A crash is simulated by a send that raises after the state and its outbox were stored: the
re-delivered command must not apply the step again, and the pending events go out byte for byte
before anything else touches the task. Rights come from the directory, never from the message.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from airgrid.config.settings import DATA_DIR, load_settings
from airgrid.domain.intake import Rejection, parse_feedback
from airgrid.models.alarms import AlarmEvent
from airgrid.models.feedback import Feedback
from airgrid.models.tasks import DeadlineCommand, FeedbackCommand, OutboxCommand, Task
from airgrid.stages.owner import Owner
from airgrid.worker.app import build_runtime

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


class Crash(Exception):
    """The process died here."""


class FakeTopic:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.fail_next = 0

    async def send(self, key: bytes | None = None, value: bytes = b"") -> Any:
        if self.fail_next:
            self.fail_next -= 1
            raise Crash
        self.sent.append(value)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@pytest.fixture
def owner(tmp_path: Path) -> Owner:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        'default = "s"\n[policies.s]\nfeedback_deadline_s = 100\nreminders_before_s = [50]\n'
        "escalate_after_s = 20\n"
    )
    settings = load_settings(policy_file=policy, grid_file=DATA_DIR / "grids.json")
    rt = build_runtime(settings, clock=lambda: T0)
    rt.topics["task_events"] = FakeTopic()
    rt.topics["feedback_rejected"] = FakeTopic()
    flushes: list[int] = []

    async def flush() -> None:
        flushes.append(1)

    o = Owner(rt, {}, {}, flush)
    o.flushes = flushes  # type: ignore[attr-defined]
    return o


def alarm(station: str = "ST001") -> AlarmEvent:
    aid = f"{station}:pm25_1h_exceedance:1"
    return AlarmEvent(
        event_id=aid + ":opened",
        alarm_id=aid,
        kind="opened",
        station_id=station,
        rule_id="pm25_1h_exceedance",
        pollutant="pm25",
        severity="major",
        route="grid",
        value=120.0,
        threshold=75.0,
        period="1h",
        window_start=T0 - timedelta(hours=1),
        window_end=T0,
        opened_at=T0,
        emitted_at=T0,
    )


def events(owner: Owner) -> list[dict[str, Any]]:
    return [orjson.loads(v) for v in owner.events_topic.sent]


async def test_commit_stores_flushes_publishes_then_clears_the_outbox(owner: Owner) -> None:
    await owner.on_alarm(alarm(), T0)
    (ev,) = events(owner)
    assert ev["type"] == "dispatched" and ev["version"] == 1
    assert owner.flushes == [1]  # type: ignore[attr-defined]  # the pointer and the task, together
    assert owner.station_open == {"ST001": ev["task_id"]}
    task = Task.model_validate(owner.tasks[ev["task_id"]])
    assert task.version == 1 and task.outbox == ()


async def test_crash_before_publishing_resends_identical_bytes_and_applies_once(owner: Owner) -> None:
    await owner.on_alarm(alarm(), T0)
    task = Task.model_validate(next(iter(owner.tasks.values())))
    cmd = DeadlineCommand(
        task_id=task.task_id,
        station_id="ST001",
        schedule_id=task.schedule_id,
        step=0,
        due_at=task.schedule[0].at,
        issued_at=task.schedule[0].at,
    )
    later = task.schedule[0].at + timedelta(seconds=1)
    owner.events_topic.fail_next = 1
    with pytest.raises(Crash):
        await owner.on_deadline(cmd, later)
    stored = Task.model_validate(owner.tasks[task.task_id])
    assert stored.version == 2 and len(stored.outbox) == 1 and len(owner.events_topic.sent) == 1

    # the command is re-delivered (its offset was never committed), even a little later
    await owner.on_deadline(cmd, later + timedelta(seconds=5))
    sent = events(owner)
    assert [(e["version"], e["type"]) for e in sent] == [(1, "dispatched"), (2, "reminded")]
    assert owner.events_topic.sent[1] == stored.outbox[0].encode()  # the stored bytes
    after = Task.model_validate(owner.tasks[task.task_id])
    assert after.reminders == 1 and after.outbox == ()
    assert owner.m.deadline_commands.labels("stale")._value.get() == 1


async def test_a_task_stored_without_its_pointer_is_found_again_by_the_replayed_alarm(owner: Owner) -> None:
    # a crash after the task (with its outbox) reached the changelog, but not the pointer
    owner.events_topic.fail_next = 1
    with pytest.raises(Crash):
        await owner.on_alarm(alarm(), T0)
    (task_id,) = owner.tasks
    owner.station_open.clear()
    assert Task.model_validate(owner.tasks[task_id]).outbox != ()

    await owner.on_alarm(alarm(), T0 + timedelta(seconds=3))  # re-delivered
    assert owner.station_open == {"ST001": task_id}
    sent = events(owner)
    assert [(e["task_id"], e["version"], e["type"]) for e in sent] == [(task_id, 1, "dispatched")]
    assert Task.model_validate(owner.tasks[task_id]).outbox == ()
    await owner.on_alarm(alarm(), T0 + timedelta(seconds=9))  # and again: nothing more
    assert len(events(owner)) == 1


async def test_outbox_command_resends_a_stuck_outbox_once(owner: Owner) -> None:
    await owner.on_alarm(alarm(), T0)
    task_id = next(iter(owner.tasks))
    owner.events_topic.fail_next = 1
    fb = Feedback(feedback_id="f1", task_id=task_id, worker_id="W-L3-010102-1", action="acknowledge", at=T0)
    cmd = FeedbackCommand(
        station_id="ST001",
        feedback=fb,
        origin_topic="fb",
        origin_partition=0,
        origin_offset=1,
        received_at=T0,
    )
    with pytest.raises(Crash):
        await owner.on_feedback(cmd, T0)
    outbox = OutboxCommand(task_id=task_id, station_id="ST001", version=2, issued_at=T0)
    await owner.on_outbox(outbox)
    await owner.on_outbox(outbox)  # a second sweep's command finds nothing to do
    assert [e["type"] for e in events(owner)] == ["dispatched", "acknowledged"]
    await owner.on_feedback(cmd, T0)  # the re-delivered feedback: already applied
    assert len(events(owner)) == 2


async def test_the_workers_grid_comes_from_the_directory_not_the_message(owner: Owner) -> None:
    await owner.on_alarm(alarm(), T0)
    task_id = next(iter(owner.tasks))
    raw = orjson.dumps(
        {
            "feedback_id": "f1",
            "task_id": task_id,
            "worker_id": "W-L3-021205-1",
            "action": "acknowledge",
            "at": T0.isoformat(),
            "grid_id": "L3-010102",  # forged: the task's own grid
        }
    )
    refused = parse_feedback(raw, 65536)
    assert isinstance(refused, Rejection) and refused.code == "invalid" and "grid_id" in refused.reason
    fb = Feedback(feedback_id="f2", task_id=task_id, worker_id="W-L3-021205-1", action="acknowledge", at=T0)
    cmd = FeedbackCommand(
        station_id="ST001",
        feedback=fb,
        origin_topic="fb",
        origin_partition=0,
        origin_offset=2,
        received_at=T0,
    )
    await owner.on_feedback(cmd, T0)
    (rejected,) = [orjson.loads(v) for v in owner.rejected_topic.sent]
    assert rejected["reason_code"] == "wrong_grid" and "L3-021205" in rejected["reason"]
    assert Task.model_validate(owner.tasks[task_id]).state == "dispatched"


async def test_dispatch_uses_the_warning_hook_and_co_notifies_neighbours(owner: Owner) -> None:
    seen: list[str] = []
    owner.rt.warning_level = lambda station: seen.append(station) or "orange"  # type: ignore[func-returns-value]
    await owner.on_alarm(alarm("ST002"), T0)
    (ev,) = events(owner)
    task = Task.model_validate(owner.tasks[ev["task_id"]])
    assert seen == ["ST002"] and task.warning == "orange"  # the level over the alarm's station
    assert ev["co_notified"] == []  # the radius setting is 0 by default: off


async def test_drain_sends_only_what_the_topic_lacks_and_everything_if_it_cannot_tell(owner: Owner) -> None:
    await owner.on_alarm(alarm(), T0)
    task_id = next(iter(owner.tasks))
    fb = Feedback(
        feedback_id="f1",
        task_id=task_id,
        worker_id="W-L3-010102-1",
        action="submit",
        at=T0,
        findings={"source_found": True, "source_type": "industrial"},  # type: ignore[arg-type]
    )
    cmd = FeedbackCommand(
        station_id="ST001",
        feedback=fb,
        origin_topic="fb",
        origin_partition=0,
        origin_offset=1,
        received_at=T0,
    )
    go = Feedback(feedback_id="f0", task_id=task_id, worker_id="W-L3-010102-1", action="on_site", at=T0)
    await owner.on_feedback(cmd.model_copy(update={"feedback": go}), T0)
    owner.events_topic.fail_next = 1
    with pytest.raises(Crash):
        await owner.on_feedback(cmd, T0)
    pending = [orjson.loads(p)["event_id"] for p in Task.model_validate(owner.tasks[task_id]).outbox]
    assert pending == [f"{task_id}:3", f"{task_id}:4"]  # submitted, departments notified
    asked: list[bytes] = []

    async def first_made_it(key: bytes) -> set[str]:
        asked.append(key)
        return {f"{task_id}:1", f"{task_id}:2", f"{task_id}:3"}

    owner.published = first_made_it
    await owner.on_outbox(OutboxCommand(task_id=task_id, station_id="ST001", version=4, issued_at=T0))
    assert asked == [b"ST001"]
    assert [e["type"] for e in events(owner)] == ["dispatched", "on_site", "departments_notified"]

    owner.events_topic.fail_next = 1
    close = Feedback(feedback_id="f2", task_id=task_id, worker_id="W-L2-0101", action="approve", at=T0)
    with pytest.raises(Crash):
        await owner.on_feedback(cmd.model_copy(update={"feedback": close}), T0)
    assert owner.station_open == {"ST001": task_id}  # closed, but the sweeper still finds it

    async def unreadable(key: bytes) -> set[str]:
        raise TimeoutError("broker away")

    owner.published = unreadable
    await owner.on_outbox(OutboxCommand(task_id=task_id, station_id="ST001", version=5, issued_at=T0))
    assert [e["type"] for e in events(owner)][-1] == "closed"
    closed = Task.model_validate(owner.tasks[task_id])
    assert closed.state == "closed" and closed.outbox == () and owner.station_open == {}


async def test_sweeper_asks_for_an_outbox_seen_on_two_passes_and_skips_closed_in_gauges(owner: Owner) -> None:
    from types import SimpleNamespace

    from airgrid.stages.deadlines import Sweeper

    await owner.on_alarm(alarm(), T0)
    task_id = next(iter(owner.tasks))
    commands = FakeTopic()
    owner.rt.topics["task_commands"] = commands
    owner.rt.tables.update(tasks=owner.tasks, station_open=owner.station_open)
    sweeper = Sweeper(SimpleNamespace(rebalancing=False, in_recovery=False), owner.rt)
    await sweeper.sweep()
    assert commands.sent == []  # nothing pending, nothing due (the reminder is 50 s away)
    owner.events_topic.fail_next = 1
    fb = Feedback(feedback_id="f1", task_id=task_id, worker_id="W-L3-010102-1", action="acknowledge", at=T0)
    cmd = FeedbackCommand(
        station_id="ST001", feedback=fb, origin_topic="f", origin_partition=0, origin_offset=1, received_at=T0
    )
    with pytest.raises(Crash):
        await owner.on_feedback(cmd, T0)
    await sweeper.sweep()
    assert commands.sent == []  # seen once: may be a commit in flight
    await sweeper.sweep()
    (sent,) = [orjson.loads(v) for v in commands.sent]
    assert (sent["kind"], sent["task_id"], sent["version"]) == ("outbox", task_id, 2)
    sweeper.app.rebalancing = True
    assert await sweeper.sweep() == 0 and len(commands.sent) == 1  # idle while partitions move


async def test_key_grid_stations_get_the_stricter_policy_and_a_warning_overrides_it() -> None:
    rt = build_runtime(load_settings(grid_file=DATA_DIR / "grids.json"), clock=lambda: T0)
    rt.topics["task_events"] = FakeTopic()
    rt.topics["feedback_rejected"] = FakeTopic()

    async def flush() -> None:
        return None

    owner = Owner(rt, {}, {}, flush)
    key_station = next(s for s in rt.directory.stations if rt.directory.lineage(s).key_grid)  # type: ignore[union-attr]
    await owner.on_alarm(alarm(key_station), T0)
    await owner.on_alarm(alarm("ST001"), T0)
    rt.warning_level = lambda city: "red"
    await owner.on_alarm(alarm("ST003"), T0)
    chosen = {t["station_id"]: (t["policy"], t["warning"]) for t in owner.tasks.values()}
    assert chosen == {
        key_station: ("key_grid", "none"),
        "ST001": ("standard", "none"),
        "ST003": ("warning", "red"),
    }
    first = Task.model_validate(owner.tasks[next(iter(owner.tasks))])
    assert first.schedule[0].reason == "not acknowledged"  # the shipped policies remind after 30 min
    assert (first.schedule[0].at - T0).total_seconds() == 1800


def feedback_cmd(task_id: str, fid: str, action: str, offset: int) -> FeedbackCommand:
    fb = Feedback(feedback_id=fid, task_id=task_id, worker_id="W-L3-010102-1", action=action, at=T0)
    return FeedbackCommand(
        station_id="ST001",
        feedback=fb,
        origin_topic="fb",
        origin_partition=0,
        origin_offset=offset,
        received_at=T0,
    )


async def test_group_commit_makes_a_batch_durable_with_one_flush_and_publishes_in_order(owner: Owner) -> None:
    owner.autocommit = False
    await owner.on_alarm(alarm("ST001"), T0)
    task_id = next(iter(owner.tasks))
    await owner.on_feedback(feedback_cmd(task_id, "f1", "acknowledge", 1), T0)  # same task, same batch
    await owner.on_alarm(alarm("ST002"), T0)
    # nothing published and nothing flushed yet; the task keeps both changes' events, in order
    assert owner.events_topic.sent == [] and owner.flushes == []  # type: ignore[attr-defined]
    staged = Task.model_validate(owner.tasks[task_id])
    assert staged.version == 2
    assert [orjson.loads(p)["type"] for p in staged.outbox] == ["dispatched", "acknowledged"]
    # the sweeper's outbox command during the batch does not send the batch's events early
    await owner.on_outbox(OutboxCommand(task_id=task_id, station_id="ST001", version=2, issued_at=T0))
    assert owner.events_topic.sent == []

    await owner.finish()
    assert owner.flushes == [1]  # type: ignore[attr-defined]
    sent = events(owner)
    assert [(e["station_id"], e["version"], e["type"]) for e in sent] == [
        ("ST001", 1, "dispatched"),
        ("ST001", 2, "acknowledged"),
        ("ST002", 1, "dispatched"),
    ]
    assert all(Task.model_validate(raw).outbox == () for raw in owner.tasks.values())
    assert owner.m.owner_batch._sum.get() == 3
    await owner.finish()  # nothing staged: no flush
    assert owner.flushes == [1]  # type: ignore[attr-defined]


async def test_a_crash_inside_a_group_commit_leaves_every_staged_event_for_the_resend(owner: Owner) -> None:
    owner.autocommit = False
    await owner.on_alarm(alarm("ST001"), T0)
    task_id = next(iter(owner.tasks))
    await owner.on_feedback(feedback_cmd(task_id, "f1", "acknowledge", 1), T0)
    owner.events_topic.fail_next = 1  # the first send of the batch fails: nothing went out
    with pytest.raises(Crash):
        await owner.finish()
    stored = Task.model_validate(owner.tasks[task_id])
    assert len(stored.outbox) == 2 and owner.staged_changes == 0

    # the re-delivered feedback (its offset may or may not have been committed) sends what is
    # pending, byte for byte and in order, and is not applied a second time
    owner.autocommit = True
    await owner.on_feedback(feedback_cmd(task_id, "f1", "acknowledge", 1), T0)
    assert [(e["version"], e["type"]) for e in events(owner)] == [(1, "dispatched"), (2, "acknowledged")]
    assert owner.events_topic.sent == [p.encode() for p in stored.outbox]
    assert Task.model_validate(owner.tasks[task_id]).outbox == ()
