"""Unit tests of the task state machine (airgrid.domain.tasks): examples, one behaviour each.

The property tests over random action sequences live in test_task_properties.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airgrid.domain.escalation import Policy
from airgrid.domain.tasks import (
    DEPARTMENTS,
    RECENT_FEEDBACK,
    TRANSITIONS,
    Refusal,
    apply_deadline,
    apply_feedback,
    authorise,
    dispatch,
    due_command,
    join,
    live_step,
    station_of_task,
    task_id_for,
)
from airgrid.models.alarms import AlarmEvent
from airgrid.models.feedback import Feedback, Findings
from airgrid.models.tasks import DeadlineCommand, Lineage, Task, TaskEvent

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
LINEAGE = Lineage(l3="L3-010102", l2="L2-0101", l1="L1-01")
# deadline T0+100 s; reminder at T0+70, overdue reminder at T0+100, level 2 at T0+150, level 1 at T0+200
SHORT = Policy(
    name="short",
    feedback_deadline_s=100,
    reminders_before_s=(30,),
    overdue_reminder=True,
    escalate_after_s=50,
    top_level=1,
)


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def alarm(n: int = 0, station: str = "ST001", opened: datetime = T0) -> AlarmEvent:
    aid = f"{station}:pm25_1h_exceedance:{n}"
    return AlarmEvent(
        event_id=f"{aid}:1",
        alarm_id=aid,
        kind="opened",
        station_id=station,
        rule_id="pm25_1h_exceedance",
        pollutant="pm25",
        severity="major",
        route="grid",
        value=99.0,
        threshold=75.0,
        period="1h",
        window_start=opened - timedelta(hours=1),
        window_end=opened,
        opened_at=opened,
        emitted_at=opened,
    )


def feedback(task: Task, action: str, fid: str, at: datetime, **kw: object) -> Feedback:
    return Feedback.model_validate(
        {"feedback_id": fid, "task_id": task.task_id, "worker_id": "W-1", "action": action, "at": at, **kw}
    )


def ok(result: tuple[Task, list[TaskEvent]] | Refusal) -> tuple[Task, list[TaskEvent]]:
    assert not isinstance(result, Refusal), result
    return result


def fresh() -> Task:
    return dispatch(alarm(), LINEAGE, SHORT, T0)[0]


def on_site(task: Task, at: datetime = T0) -> Task:
    return ok(apply_feedback(task, feedback(task, "on_site", "f-on-site", at), SHORT, at))[0]


def tick(task: Task, at: datetime) -> tuple[Task, list[TaskEvent]]:
    cmd = due_command(task, at)
    assert cmd is not None, f"nothing due at {at}"
    return apply_deadline(task, cmd, at)


# --- ids ----------------------------------------------------------------------------------------


def test_task_id_is_deterministic_and_embeds_the_station() -> None:
    a = alarm(opened=datetime(2026, 3, 1, 9, 5, 59, tzinfo=UTC))
    assert task_id_for(a) == "T-ST001-202603010905"
    assert task_id_for(a) == task_id_for(a.model_copy())
    assert station_of_task(task_id_for(a)) == "ST001"


@given(st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True))
def test_station_of_task_inverts_task_id_for(station: str) -> None:
    tid = task_id_for(alarm(station=station))
    Task.model_validate({**fresh().model_dump(), "task_id": tid, "station_id": station})  # a valid TaskId
    assert station_of_task(tid) == station


@pytest.mark.parametrize("bad", ["", "ST001-202603010905", "T-", "T-202603010905", "T-ST001-", "T-ST-0x12"])
def test_station_of_task_refuses_foreign_ids(bad: str) -> None:
    assert station_of_task(bad) is None


# --- dispatch and join --------------------------------------------------------------------------


def test_dispatch_snapshots_policy_and_schedule() -> None:
    task, ev = dispatch(alarm(), LINEAGE, SHORT, T0)
    assert (task.state, task.version, task.level, task.grid_id) == ("dispatched", 1, 3, "L3-010102")
    assert task.policy == "short" and task.schedule_id == 1 and task.next_step == 0
    assert task.deadline_at == s(100)
    assert [(x.at, x.action, x.level) for x in task.schedule] == [
        (s(70), "remind", 3),
        (s(100), "remind", 3),
        (s(150), "escalate", 2),
        (s(200), "escalate", 1),
    ]
    assert ev.event_id == f"{task.task_id}:1" and ev.version == 1 and ev.type == "dispatched"
    assert ev.alarm_id == alarm().alarm_id and ev.note == "pm25_1h_exceedance"
    assert ev.grid_id == "L3-010102" and ev.deadline_at == s(100) and ev.at == T0


def test_repeat_alarm_joins_and_known_alarm_is_a_no_op() -> None:
    task = fresh()
    joined, events = join(task, alarm(1), s(5))
    assert joined.alarm_ids == (alarm().alarm_id, alarm(1).alarm_id)
    assert [(e.type, e.version, e.alarm_id) for e in events] == [("alarm_joined", 2, alarm(1).alarm_id)]
    assert joined.updated_at == s(5) and joined.state == "dispatched"
    assert join(joined, alarm(1), s(6)) == (joined, [])
    assert join(joined, alarm(0), s(6)) == (joined, [])


# --- deadlines ----------------------------------------------------------------------------------


def test_full_chain_reminders_then_escalation_to_level_2_then_1() -> None:
    task = fresh()
    seen = []
    for at in (70, 100, 150, 200):
        assert due_command(task, s(at) - timedelta(microseconds=1)) is None
        task, events = tick(task, s(at))
        seen += events
    assert [(e.type, e.at, e.level, e.grid_id, e.version) for e in seen] == [
        ("reminded", s(70), 3, "L3-010102", 2),
        ("reminded", s(100), 3, "L3-010102", 3),
        ("escalated", s(150), 2, "L2-0101", 4),
        ("escalated", s(200), 1, "L1-01", 5),
    ]
    assert [e.note for e in seen] == [
        "deadline approaching",
        "feedback overdue",
        "no feedback, escalated to level 2",
        "no feedback, escalated to level 1",
    ]
    assert all(e.deadline_at == s(100) for e in seen)
    assert (task.reminders, task.escalations, task.level, task.grid_id) == (2, 2, 1, "L1-01")
    assert task.next_step == 4 and due_command(task, s(10_000)) is None


def test_catch_up_after_downtime_applies_one_step_at_a_time() -> None:
    task = fresh()
    late = s(5 * 3600)  # every step is hours overdue
    cmd = due_command(task, late)
    assert cmd is not None and (cmd.step, cmd.due_at, cmd.schedule_id) == (0, s(70), 1)
    task, events = apply_deadline(task, cmd, late)
    assert [e.type for e in events] == ["reminded"]
    # the rest keeps its spacing, counted from now: 30 s, 80 s, 130 s after the catch-up
    assert [x.at for x in task.schedule[1:]] == [late + timedelta(seconds=d) for d in (30, 80, 130)]
    assert due_command(task, late) is None
    levels = []
    for d in (30, 80, 130):
        assert due_command(task, late + timedelta(seconds=d - 1)) is None
        task, events = tick(task, late + timedelta(seconds=d))
        assert len(events) == 1
        levels.append(task.level)
    assert levels == [3, 2, 1]


def test_duplicate_and_stale_deadline_commands_do_nothing() -> None:
    task = fresh()
    cmd = due_command(task, s(70))
    assert cmd is not None
    once, events = apply_deadline(task, cmd, s(70))
    assert len(events) == 1
    assert apply_deadline(once, cmd, s(71)) == (once, [])  # duplicate
    other = cmd.model_copy(update={"schedule_id": 2, "step": 1})
    assert apply_deadline(once, other, s(300)) == (once, [])  # another schedule
    beyond = cmd.model_copy(update={"step": 9})
    assert apply_deadline(once.model_copy(update={"next_step": 9}), beyond, s(999))[1] == []


def test_deadline_command_not_yet_due_under_clock_skew_is_ignored() -> None:
    task = fresh()
    cmd = DeadlineCommand(
        task_id=task.task_id, station_id="ST001", schedule_id=1, step=0, due_at=s(70), issued_at=s(70)
    )
    assert apply_deadline(task, cmd, s(69)) == (task, [])
    assert apply_deadline(task, cmd, s(70))[0].next_step == 1


def test_deadlines_pause_under_review() -> None:
    task = fresh()
    for action, fid in (("acknowledge", "f1"), ("submit", "f2")):
        task, _ = ok(apply_feedback(task, feedback(task, action, fid, s(10)), SHORT, s(10)))
    assert task.state == "feedback_submitted"
    assert due_command(task, s(10_000)) is None
    cmd = DeadlineCommand(
        task_id=task.task_id, station_id="ST001", schedule_id=1, step=0, due_at=s(70), issued_at=s(70)
    )
    assert apply_deadline(task, cmd, s(10_000)) == (task, [])


def test_acknowledgement_reminder_fires_only_while_unacknowledged() -> None:
    policy = SHORT.model_copy(update={"ack_deadline_s": 20})
    task = dispatch(alarm(), LINEAGE, policy, T0)[0]
    assert [(x.at, x.reason, x.only_unacknowledged) for x in task.schedule[:2]] == [
        (s(20), "not acknowledged", True),
        (s(70), "deadline approaching", False),
    ]
    _, events = tick(task, s(20))
    assert [(e.type, e.note) for e in events] == [("reminded", "not acknowledged")]
    # acknowledged before the sweeper's command arrives: the command is stale, the step skipped
    cmd = due_command(task, s(25))
    assert cmd is not None and cmd.step == 0
    acked, _ = ok(apply_feedback(task, feedback(task, "acknowledge", "f1", s(21)), policy, s(21)))
    assert apply_deadline(acked, cmd, s(25)) == (acked, [])
    assert live_step(acked) == 1 and due_command(acked, s(69)) is None
    later, events = tick(acked, s(70))
    assert [e.note for e in events] == ["deadline approaching"] and later.next_step == 2


def test_dispatch_records_co_notified_grids_and_warning() -> None:
    task, ev = dispatch(
        alarm(), LINEAGE, SHORT, T0, co_notified=("L3-010103", "L3-010102", "L3-010103"), warning="orange"
    )
    assert task.co_notified == ev.co_notified == ("L3-010103",)  # deduplicated, own grid dropped
    assert task.warning == "orange"


# --- feedback -----------------------------------------------------------------------------------


def test_happy_path_to_closed_and_closed_accepts_nothing() -> None:
    task = fresh()
    types = []
    for i, action in enumerate(("acknowledge", "on_site", "submit", "approve")):
        task, events = ok(apply_feedback(task, feedback(task, action, f"f{i}", s(i)), SHORT, s(i)))
        types += [(e.type, e.state, e.version, e.feedback_id) for e in events]
    assert types == [
        ("acknowledged", "acknowledged", 2, "f0"),
        ("on_site", "on_site", 3, "f1"),
        ("feedback_submitted", "feedback_submitted", 4, "f2"),
        ("closed", "closed", 5, "f3"),
    ]
    assert not task.is_open and due_command(task, s(10_000)) is None
    for action in ("acknowledge", "on_site", "submit", "approve", "reject", "close"):
        refusal = apply_feedback(task, feedback(task, action, "new", s(9)), SHORT, s(9))
        assert isinstance(refusal, Refusal) and refusal.code == "illegal_transition"
        assert "none: it is closed" in refusal.reason


def test_illegal_transition_lists_the_allowed_actions() -> None:
    task = fresh()
    refusal = apply_feedback(task, feedback(task, "approve", "f1", s(1)), SHORT, s(1))
    assert refusal == Refusal(
        "illegal_transition", "cannot approve a task that is dispatched; allowed: acknowledge, on_site"
    )


def test_replayed_feedback_id_is_a_no_op() -> None:
    task = fresh()
    task, events = ok(apply_feedback(task, feedback(task, "acknowledge", "f1", s(1)), SHORT, s(1)))
    assert len(events) == 1 and task.applied_feedback == ("f1",)
    # same id again, even with another action: already applied
    assert apply_feedback(task, feedback(task, "on_site", "f1", s(2)), SHORT, s(2)) == (task, [])


def test_recent_feedback_window_is_bounded() -> None:
    task = fresh()
    for i in range(RECENT_FEEDBACK + 5):
        action = "reject" if task.state == "feedback_submitted" else "submit"
        if task.state == "dispatched":
            action = "on_site"
        task, _ = ok(apply_feedback(task, feedback(task, action, f"f{i}", s(i)), SHORT, s(i)))
    assert len(task.applied_feedback) == RECENT_FEEDBACK
    assert task.applied_feedback[-1] == f"f{RECENT_FEEDBACK + 4}" and "f0" not in task.applied_feedback


def test_reject_reopens_on_site_with_new_deadline_and_schedule() -> None:
    task = fresh()
    old_cmd = due_command(task, s(70))
    assert old_cmd is not None
    for i, action in enumerate(("on_site", "submit")):
        task, _ = ok(apply_feedback(task, feedback(task, action, f"f{i}", s(20)), SHORT, s(20)))
    task, events = ok(apply_feedback(task, feedback(task, "reject", "r1", s(40)), SHORT, s(40)))
    assert [(e.type, e.state, e.deadline_at) for e in events] == [("feedback_rejected", "on_site", s(140))]
    assert (task.state, task.schedule_id, task.next_step, task.deadline_at) == ("on_site", 2, 0, s(140))
    assert [x.at for x in task.schedule] == [s(110), s(140), s(190), s(240)]
    assert apply_deadline(task, old_cmd, s(500)) == (task, [])  # old schedule: stale
    cmd = due_command(task, s(110))
    assert cmd is not None and (cmd.schedule_id, cmd.step) == (2, 0)
    assert apply_deadline(task, cmd, s(110))[1][0].type == "reminded"


def test_reject_after_escalation_keeps_the_level_and_climbs_from_it() -> None:
    task = fresh()
    for at in (70, 100, 150):
        task, _ = tick(task, s(at))
    assert task.level == 2
    task = on_site(task, s(155))
    task, _ = ok(apply_feedback(task, feedback(task, "submit", "f1", s(160)), SHORT, s(160)))
    task, _ = ok(apply_feedback(task, feedback(task, "reject", "f2", s(170)), SHORT, s(170)))
    assert task.level == 2 and task.grid_id == "L2-0101"
    assert [(x.action, x.level) for x in task.schedule] == [("remind", 2), ("remind", 2), ("escalate", 1)]


def test_submit_with_a_source_type_notifies_departments() -> None:
    task = on_site(fresh())
    findings = Findings(source_found=True, source_type="coal_burning", measures="stopped a boiler")
    task, events = ok(
        apply_feedback(task, feedback(task, "submit", "f1", s(5), findings=findings), SHORT, s(5))
    )
    assert [(e.type, e.version) for e in events] == [("feedback_submitted", 3), ("departments_notified", 4)]
    submitted, linked = events
    assert submitted.findings == findings and submitted.worker_id == "W-1"
    assert linked.departments == DEPARTMENTS["coal_burning"] == ("ecology_environment", "market_regulation")
    assert linked.feedback_id == "f1" and linked.note == "source type coal_burning"
    assert task.version == 4 and task.state == "feedback_submitted"


@pytest.mark.parametrize("findings", [None, Findings(source_found=False)])
def test_submit_without_a_source_type_notifies_nobody(findings: Findings | None) -> None:
    task = on_site(fresh())
    fb = feedback(task, "submit", "f1", s(5), findings=findings)
    task, events = ok(apply_feedback(task, fb, SHORT, s(5)))
    assert [e.type for e in events] == ["feedback_submitted"] and task.version == 3


# --- authorise ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "level", "grid", "code"),
    [
        ("acknowledge", 3, "L3-010103", "wrong_grid"),  # level-3 worker of another grid
        ("acknowledge", 2, "L2-0102", "wrong_grid"),
        ("approve", 1, "L1-02", "wrong_grid"),
        ("acknowledge", 2, "L3-010102", "wrong_grid"),  # level claimed does not match the grid
        ("approve", 3, "L3-010102", "not_reviewer"),
        ("reject", 3, "L3-010102", "not_reviewer"),
        ("close", 3, "L3-010102", "not_reviewer"),
    ],
)
def test_authorise_refuses(action: str, level: int, grid: str, code: str) -> None:
    refusal = authorise(fresh(), action, level, grid)
    assert refusal is not None and refusal.code == code
    assert grid in refusal.reason


@pytest.mark.parametrize(
    ("action", "level", "grid"),
    [
        ("acknowledge", 3, "L3-010102"),
        ("submit", 3, "L3-010102"),
        ("approve", 2, "L2-0101"),
        ("reject", 2, "L2-0101"),
        ("close", 1, "L1-01"),
        ("on_site", 2, "L2-0101"),
    ],
)
def test_authorise_allows_the_chain(action: str, level: int, grid: str) -> None:
    assert authorise(fresh(), action, level, grid) is None


def test_transition_table_never_leaves_closed() -> None:
    assert not [k for k in TRANSITIONS if k[0] == "closed"]
    assert {v for (_, a), v in TRANSITIONS.items() if a in ("approve", "close")} == {"closed"}
