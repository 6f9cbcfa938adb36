"""The task owner's protocol without a broker, driven as the worker drives it: each message goes
to ``handle`` and ``finish`` makes the staged changes durable and publishes them (the group
commit); tables are dicts, topics record what they send.

A crash is simulated by a send that raises after the state and its outbox were stored: the
re-delivered command must not apply the step again, and the pending events go out byte for byte
before anything else touches the task. Rights come from the directory, never from the message.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from airgrid.config.settings import DATA_DIR
from airgrid.domain.detection.warnings import StationWarnings, WarningBoard
from airgrid.domain.directory import Directory
from airgrid.domain.escalation import load_policy_book
from airgrid.domain.intake import Rejection, parse_feedback
from airgrid.metrics import Metrics
from airgrid.models.alarms import AlarmEvent
from airgrid.models.feedback import Feedback
from airgrid.models.tasks import DeadlineCommand, FeedbackCommand, OutboxCommand, Task
from airgrid.models.warnings import PollutionWarning
from airgrid.stages.deadlines import DeadlineSweeper
from airgrid.stages.owner import TaskOwner
from tests.unit.stage_fakes import T0, Crash, FakeTopic, on

DIRECTORY = Directory.load(DATA_DIR / "grids.json")
ALARMS, COMMANDS = "alarms", "task-commands"


def make_owner(
    policy_file: Path, board: WarningBoard | None = None, tasks: dict[str, Any] | None = None
) -> TaskOwner:
    flushes: list[int] = []

    async def flush() -> None:
        flushes.append(1)

    o = TaskOwner(
        tasks={} if tasks is None else tasks,
        station_open={},
        events=FakeTopic(),
        rejected=FakeTopic(),
        alarms_dlq=FakeTopic(),
        commands_dlq=FakeTopic(),
        alarms_topic=ALARMS,
        directory=DIRECTORY,
        policies=load_policy_book(policy_file),
        warnings=StationWarnings(board or WarningBoard(), DIRECTORY, lambda: T0),
        metrics=Metrics(),
        clock=lambda: T0,
        flush=flush,
    )
    o.flushes = flushes  # type: ignore[attr-defined]
    return o


@pytest.fixture
def owner(tmp_path: Path) -> TaskOwner:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        'default = "s"\n[policies.s]\nfeedback_deadline_s = 100\nreminders_before_s = [50]\n'
        "escalate_after_s = 20\n"
    )
    return make_owner(policy)


async def deliver(owner: TaskOwner, topic: str, message: Any, at: Any = None) -> None:
    """One message, then the group commit, as the worker's driver does when nothing else waits;
    ``at``: the owner's clock for this message."""
    if at is not None:
        owner.clock = lambda: at
    await owner.handle(on(topic, message))
    await owner.finish()


def fake(topic: Any) -> FakeTopic:
    assert isinstance(topic, FakeTopic)
    return topic


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


def events(owner: TaskOwner) -> list[dict[str, Any]]:
    return fake(owner.events).json()


async def test_commit_stores_flushes_publishes_then_clears_the_outbox(owner: TaskOwner) -> None:
    await deliver(owner, ALARMS, alarm(), T0)
    (ev,) = events(owner)
    assert ev["type"] == "dispatched" and ev["version"] == 1
    assert owner.flushes == [1]  # type: ignore[attr-defined]  # the pointer and the task, together
    assert owner.station_open == {"ST001": ev["task_id"]}
    task = Task.model_validate(owner.tasks[ev["task_id"]])
    assert task.version == 1 and task.outbox == ()


async def test_crash_before_publishing_resends_identical_bytes_and_applies_once(owner: TaskOwner) -> None:
    await deliver(owner, ALARMS, alarm(), T0)
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
    fake(owner.events).fail_next = 1
    with pytest.raises(Crash):
        await deliver(owner, COMMANDS, cmd, later)
    stored = Task.model_validate(owner.tasks[task.task_id])
    assert stored.version == 2 and len(stored.outbox) == 1 and len(fake(owner.events).sent) == 1

    # the command is re-delivered (its offset was never committed), even a little later
    await deliver(owner, COMMANDS, cmd, later + timedelta(seconds=5))
    sent = events(owner)
    assert [(e["version"], e["type"]) for e in sent] == [(1, "dispatched"), (2, "reminded")]
    assert fake(owner.events).sent[1] == stored.outbox[0].encode()  # the stored bytes
    after = Task.model_validate(owner.tasks[task.task_id])
    assert after.reminders == 1 and after.outbox == ()
    assert owner.m.deadline_commands.labels("stale")._value.get() == 1


async def test_a_task_stored_without_its_pointer_is_found_again_by_the_replayed_alarm(
    owner: TaskOwner,
) -> None:
    # a crash after the task (with its outbox) reached the changelog, but not the pointer
    fake(owner.events).fail_next = 1
    with pytest.raises(Crash):
        await deliver(owner, ALARMS, alarm(), T0)
    (task_id,) = owner.tasks
    owner.station_open.clear()
    assert Task.model_validate(owner.tasks[task_id]).outbox != ()

    await deliver(owner, ALARMS, alarm(), T0 + timedelta(seconds=3))  # re-delivered
    assert owner.station_open == {"ST001": task_id}
    sent = events(owner)
    assert [(e["task_id"], e["version"], e["type"]) for e in sent] == [(task_id, 1, "dispatched")]
    assert Task.model_validate(owner.tasks[task_id]).outbox == ()
    await deliver(owner, ALARMS, alarm(), T0 + timedelta(seconds=9))  # and again: nothing more
    assert len(events(owner)) == 1


async def test_outbox_command_resends_a_stuck_outbox_once(owner: TaskOwner) -> None:
    await deliver(owner, ALARMS, alarm(), T0)
    task_id = next(iter(owner.tasks))
    fake(owner.events).fail_next = 1
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
        await deliver(owner, COMMANDS, cmd, T0)
    outbox = OutboxCommand(task_id=task_id, station_id="ST001", version=2, issued_at=T0)
    await deliver(owner, COMMANDS, outbox)
    await deliver(owner, COMMANDS, outbox)  # a second sweep's command finds nothing to do
    assert [e["type"] for e in events(owner)] == ["dispatched", "acknowledged"]
    await deliver(owner, COMMANDS, cmd, T0)  # the re-delivered feedback: already applied
    assert len(events(owner)) == 2


async def test_the_workers_grid_comes_from_the_directory_not_the_message(owner: TaskOwner) -> None:
    await deliver(owner, ALARMS, alarm(), T0)
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
    await deliver(owner, COMMANDS, cmd, T0)
    (rejected,) = [orjson.loads(v) for v in fake(owner.rejected).sent]
    assert rejected["reason_code"] == "wrong_grid" and "L3-021205" in rejected["reason"]
    assert Task.model_validate(owner.tasks[task_id]).state == "dispatched"


async def test_dispatch_uses_the_warning_over_the_station_and_co_notifies_neighbours(
    owner: TaskOwner,
) -> None:
    lineage = DIRECTORY.lineage("ST002")
    assert lineage is not None
    warning = PollutionWarning(city=lineage.l2, level="orange", issued_at=T0 - timedelta(hours=1))
    owner.warnings.board.apply(warning)  # a street's warning covers the station
    await deliver(owner, ALARMS, alarm("ST002"), T0)
    (ev,) = events(owner)
    task = Task.model_validate(owner.tasks[ev["task_id"]])
    assert task.warning == "orange"  # the level over the alarm's station
    assert ev["co_notified"] == []  # the radius setting is 0 by default: off


async def test_drain_sends_only_what_the_topic_lacks_and_everything_if_it_cannot_tell(
    owner: TaskOwner,
) -> None:
    await deliver(owner, ALARMS, alarm(), T0)
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
    await deliver(owner, COMMANDS, cmd.model_copy(update={"feedback": go}), T0)
    fake(owner.events).fail_next = 1
    with pytest.raises(Crash):
        await deliver(owner, COMMANDS, cmd, T0)
    pending = [orjson.loads(p)["event_id"] for p in Task.model_validate(owner.tasks[task_id]).outbox]
    assert pending == [f"{task_id}:3", f"{task_id}:4"]  # submitted, departments notified
    asked: list[bytes] = []

    async def first_made_it(key: bytes) -> set[str]:
        asked.append(key)
        return {f"{task_id}:1", f"{task_id}:2", f"{task_id}:3"}

    owner.published = first_made_it
    await deliver(
        owner, COMMANDS, OutboxCommand(task_id=task_id, station_id="ST001", version=4, issued_at=T0)
    )
    assert asked == [b"ST001"]
    assert [e["type"] for e in events(owner)] == ["dispatched", "on_site", "departments_notified"]

    fake(owner.events).fail_next = 1
    close = Feedback(feedback_id="f2", task_id=task_id, worker_id="W-L2-0101", action="approve", at=T0)
    with pytest.raises(Crash):
        await deliver(owner, COMMANDS, cmd.model_copy(update={"feedback": close}), T0)
    assert owner.station_open == {"ST001": task_id}  # closed, but the sweeper still finds it

    async def unreadable(key: bytes) -> set[str]:
        raise TimeoutError("broker away")

    owner.published = unreadable
    await deliver(
        owner, COMMANDS, OutboxCommand(task_id=task_id, station_id="ST001", version=5, issued_at=T0)
    )
    assert [e["type"] for e in events(owner)][-1] == "closed"
    closed = Task.model_validate(owner.tasks[task_id])
    assert closed.state == "closed" and closed.outbox == () and owner.station_open == {}


async def test_sweeper_asks_for_an_outbox_seen_on_two_passes_and_skips_closed_in_gauges(
    owner: TaskOwner,
) -> None:
    await deliver(owner, ALARMS, alarm(), T0)
    task_id = next(iter(owner.tasks))
    commands = FakeTopic()
    moving = [False]
    sweeper = DeadlineSweeper(
        tasks=owner.tasks,
        station_open=owner.station_open,
        commands=commands,
        metrics=owner.m,
        clock=lambda: T0,
        interval_s=1.0,
        tables_ready=lambda: not moving[0],
    )
    owner.stored = sweeper.note  # as the binding wires them
    await sweeper.sweep()
    assert commands.sent == []  # nothing pending, nothing due (the reminder is 50 s away)
    fake(owner.events).fail_next = 1
    fb = Feedback(feedback_id="f1", task_id=task_id, worker_id="W-L3-010102-1", action="acknowledge", at=T0)
    cmd = FeedbackCommand(
        station_id="ST001", feedback=fb, origin_topic="f", origin_partition=0, origin_offset=1, received_at=T0
    )
    with pytest.raises(Crash):
        await deliver(owner, COMMANDS, cmd, T0)
    await sweeper.sweep()
    assert commands.sent == []  # seen once: may be a commit in flight
    await sweeper.sweep()
    (asked,) = commands.json()
    assert (asked["kind"], asked["task_id"], asked["version"]) == ("outbox", task_id, 2)
    moving[0] = True
    assert await sweeper.sweep() == 0 and len(commands.sent) == 1  # idle while partitions move


async def test_key_grid_stations_get_the_stricter_policy_and_a_warning_overrides_it() -> None:
    board = WarningBoard()
    owner = make_owner(DATA_DIR / "policy.toml", board)
    key_station = next(s for s in DIRECTORY.stations if DIRECTORY.lineage(s).key_grid)  # type: ignore[union-attr]
    await deliver(owner, ALARMS, alarm(key_station), T0)
    await deliver(owner, ALARMS, alarm("ST001"), T0)
    board.apply(PollutionWarning(city=DIRECTORY.city, level="red", issued_at=T0 - timedelta(hours=1)))
    await deliver(owner, ALARMS, alarm("ST003"), T0)
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


async def test_group_commit_makes_a_batch_durable_with_one_flush_and_publishes_in_order(
    owner: TaskOwner,
) -> None:
    await owner.handle(on(ALARMS, alarm("ST001")))  # three messages at hand: one batch
    task_id = next(iter(owner.tasks))
    await owner.handle(on(COMMANDS, feedback_cmd(task_id, "f1", "acknowledge", 1)))  # same task
    await owner.handle(on(ALARMS, alarm("ST002")))
    # nothing published and nothing flushed yet; the task keeps both changes' events, in order
    assert fake(owner.events).sent == [] and owner.flushes == []  # type: ignore[attr-defined]
    staged = Task.model_validate(owner.tasks[task_id])
    assert staged.version == 2
    assert [orjson.loads(p)["type"] for p in staged.outbox] == ["dispatched", "acknowledged"]
    # the sweeper's outbox command during the batch does not send the batch's events early
    resend = OutboxCommand(task_id=task_id, station_id="ST001", version=2, issued_at=T0)
    await owner.handle(on(COMMANDS, resend))
    assert fake(owner.events).sent == []
    assert owner.due(queue_empty=True, now=owner.first_staged_at)  # nothing more at hand: commit

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


async def test_a_crash_inside_a_group_commit_leaves_every_staged_event_for_the_resend(
    owner: TaskOwner,
) -> None:
    await owner.handle(on(ALARMS, alarm("ST001")))
    task_id = next(iter(owner.tasks))
    await owner.handle(on(COMMANDS, feedback_cmd(task_id, "f1", "acknowledge", 1)))
    fake(owner.events).fail_next = 1  # the first send of the batch fails: nothing went out
    with pytest.raises(Crash):
        await owner.finish()
    stored = Task.model_validate(owner.tasks[task_id])
    assert len(stored.outbox) == 2 and owner.staged_changes == 0

    # the re-delivered feedback (its offset may or may not have been committed) sends what is
    # pending, byte for byte and in order, and is not applied a second time
    await deliver(owner, COMMANDS, feedback_cmd(task_id, "f1", "acknowledge", 1), T0)
    assert [(e["version"], e["type"]) for e in events(owner)] == [(1, "dispatched"), (2, "acknowledged")]
    assert fake(owner.events).sent == [p.encode() for p in stored.outbox]
    assert Task.model_validate(owner.tasks[task_id]).outbox == ()


async def test_the_batch_commits_when_nothing_waits_when_full_or_when_its_oldest_waited(
    owner: TaskOwner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airgrid.stages import owner as owner_module

    assert not owner.due(queue_empty=True, now=0.0)  # nothing staged
    await owner.handle(on(ALARMS, alarm("ST001")))
    await owner.handle(on(ALARMS, alarm("ST002")))
    start = owner.first_staged_at
    assert owner.due(queue_empty=True, now=start)  # nothing more at hand
    assert not owner.due(queue_empty=False, now=start)  # more at hand: keep filling
    assert owner.due(queue_empty=False, now=start + owner_module.BATCH_MAX_S + 1e-6)  # the oldest waited
    monkeypatch.setattr(owner_module, "BATCH_MAX", 2)
    assert owner.due(queue_empty=False, now=start)  # full


async def test_an_unreadable_alarm_or_command_goes_to_its_dead_letter_topic(owner: TaskOwner) -> None:
    await owner.handle(on(ALARMS, b'{"kind": "opened", "route": "grid", "station_id": 5}', key="ST001"))
    await owner.handle(on(COMMANDS, b"[1, 2]", key="ST001", offset=7))
    await owner.handle(on(ALARMS, b'{"kind": "cleared", "anything": true}'))  # not for the owner
    (letter,) = fake(owner.alarms_dlq).json()
    assert letter["reason_code"] == "unreadable" and letter["origin"]["topic"] == ALARMS
    (command,) = fake(owner.commands_dlq).json()
    assert command["origin"] == {"topic": COMMANDS, "partition": 0, "offset": 7}
    assert "JSON object" in command["reason"] and owner.staged_changes == 0
    assert fake(owner.rejected).sent == []  # alarms are never feedback refusals (issue 18)


async def test_an_internal_error_is_raised_to_the_driver_not_refused(owner: TaskOwner) -> None:
    class Broken(dict[str, Any]):
        def __setitem__(self, key: str, value: Any) -> None:
            raise RuntimeError("PartitionsMismatch: the changelog has 0 partitions")

    owner.station_open = Broken()
    with pytest.raises(RuntimeError, match="PartitionsMismatch"):
        await owner.handle(on(ALARMS, alarm()))
    assert fake(owner.alarms_dlq).sent == [] and fake(owner.rejected).sent == []


class CountingTable(dict[str, Any]):
    """A table that counts its reads."""

    reads = 0

    def get(self, key: str, default: Any = None) -> Any:
        self.reads += 1
        return super().get(key, default)


async def test_the_sweeper_reads_a_task_only_when_it_is_due_and_follows_the_owner() -> None:
    """Each pass used to read and validate every open task (a fifth of the worker's event loop
    with 2,500 open tasks, a stall every second): the index is read once, the owner keeps it
    current, and a pass reads a task only when its next step is due."""
    tasks = CountingTable()
    owner = make_owner(DATA_DIR / "policy-demo.toml", WarningBoard(), tasks=tasks)
    now = [T0]
    generation = [1]
    mono = [0.0]
    commands = FakeTopic()
    sweeper = DeadlineSweeper(
        tasks=tasks,
        station_open=owner.station_open,
        commands=commands,
        metrics=owner.m,
        clock=lambda: now[0],
        interval_s=1.0,
        generation=lambda: generation[0],
        monotonic=lambda: mono[0],
    )
    owner.stored = sweeper.note
    for station in ("ST001", "ST002", "ST003"):
        await deliver(owner, ALARMS, alarm(station), T0)
    tasks.reads = 0  # the sweeper's reads from here on
    await sweeper.sweep()
    assert tasks.reads == 3 and sweeper.index is not None and len(sweeper.index) == 3  # built once
    for _ in range(5):
        mono[0] += 1.0
        await sweeper.sweep()
    assert tasks.reads == 3 and commands.sent == []  # nothing due: no task read again
    await deliver(owner, ALARMS, alarm("ST004"), T0)  # stored by the owner: in the index at once
    assert len(sweeper.index) == 4
    first = Task.model_validate(dict.__getitem__(tasks, owner.station_open["ST004"]))
    now[0] = first.schedule[0].at
    tasks.reads = 0
    assert await sweeper.sweep() == 4  # every task's first reminder is due: each read once, sent
    assert tasks.reads == 4
    assert {c["task_id"] for c in commands.json()} == set(sweeper.index)
    generation[0] = 2  # a rebalance: read afresh
    tasks.reads = 0
    await sweeper.sweep()
    assert tasks.reads == 4 + 4  # the rebuild, and the four still due (not sent again so soon)
    assert len(commands.sent) == 4
    mono[0] += 61.0  # and once a minute regardless
    before = owner.m.sweeper_rebuilds._value.get()
    await sweeper.sweep()
    assert owner.m.sweeper_rebuilds._value.get() == before + 1


async def test_with_the_regional_logic_the_region_stage_dispatches_and_a_region_task_is_joined(
    owner: TaskOwner,
) -> None:
    from airgrid.domain.tasks import authorise
    from airgrid.models.regions import DispatchCommand, RegionTask

    owner.regional = True
    await deliver(owner, ALARMS, alarm("ST001"))
    assert events(owner) == []  # the alarms topic itself dispatches nothing now
    episode = alarm("L2-0101").model_copy(
        update={"alarm_id": "L2-0101:regional_episode:x", "rule_id": "regional_episode"}
    )
    region = RegionTask(grid="L2-0101", level=2, parent="L1-01", episode=episode)
    first = DispatchCommand(station_id="L2-0101", alarm=episode, region=region)
    await deliver(owner, COMMANDS, first)
    await deliver(owner, COMMANDS, first)  # a replay changes nothing
    member = DispatchCommand(station_id="L2-0101", alarm=alarm("ST001"), region=region)
    await deliver(owner, COMMANDS, member)
    got = events(owner)
    assert [(e["type"], e["level"], e["grid_id"]) for e in got] == [
        ("dispatched", 2, "L2-0101"),
        ("alarm_joined", 2, "L2-0101"),
    ]
    task = owner.task(got[0]["task_id"])
    assert task is not None and task.station_id == "L2-0101"
    assert task.alarm_ids == ("L2-0101:regional_episode:x", "ST001:pm25_1h_exceedance:1")
    assert [s.level for s in task.schedule if s.action == "escalate"] == [1]  # level 2 -> 1 only
    assert authorise(task, "acknowledge", 2, "L2-0101") is None
    assert authorise(task, "acknowledge", 3, "L3-010102") is not None  # not a level-3 task
    await deliver(owner, COMMANDS, DispatchCommand(station_id="ST005", alarm=alarm("ST005")))
    assert [(e["type"], e["level"], e["station_id"]) for e in events(owner)][-1] == ("dispatched", 3, "ST005")
