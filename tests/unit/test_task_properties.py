"""Property tests of the task state machine: random feedback, deadline commands and replays.

A run mirrors the owner agent: rights are checked with ``authorise`` before ``apply_feedback``,
alarms join only open tasks, and the sweeper's ``due_command`` is applied at the clock it was
issued at. Stale, duplicate and forged commands and replayed feedback ids are mixed in.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from hypothesis import given, settings
from hypothesis import strategies as st

from airgrid.domain.escalation import Policy
from airgrid.domain.tasks import (
    TRANSITIONS,
    Refusal,
    apply_deadline,
    apply_feedback,
    authorise,
    dispatch,
    due_command,
    join,
    live_step,
)
from airgrid.models.alarms import AlarmEvent
from airgrid.models.feedback import Feedback, FeedbackAction, Findings, SourceType
from airgrid.models.tasks import DeadlineCommand, Lineage, Step, Task, TaskEvent, TaskState

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
LINEAGE = Lineage(l3="L3-010102", l2="L2-0101", l1="L1-01")
# (level, grid): the task's chain first, then grids outside it
WORKERS = [(3, "L3-010102"), (2, "L2-0101"), (1, "L1-01"), (3, "L3-020201"), (2, "L2-0202"), (1, "L1-02")]
STATES = set(get_args(TaskState))


def alarm(n: int) -> AlarmEvent:
    aid = f"ST001:pm25_1h_exceedance:{n}"
    return AlarmEvent(
        event_id=f"{aid}:1",
        alarm_id=aid,
        kind="opened",
        station_id="ST001",
        rule_id="pm25_1h_exceedance",
        pollutant="pm25",
        severity="major",
        route="grid",
        value=99.0,
        threshold=75.0,
        period="1h",
        window_start=T0 - timedelta(hours=1),
        window_end=T0,
        opened_at=T0,
        emitted_at=T0,
    )


policies = st.builds(
    Policy,
    name=st.just("p"),
    feedback_deadline_s=st.integers(10, 400),
    reminders_before_s=st.lists(st.integers(1, 500), max_size=3).map(tuple),
    overdue_reminder=st.booleans(),
    escalate_after_s=st.integers(5, 200),
    top_level=st.sampled_from([1, 2, 3]),
    ack_deadline_s=st.none() | st.integers(1, 500),
)
feedback_ops = st.tuples(
    st.sampled_from(["feedback", "legal"]),  # legal: an action the current state allows
    st.sampled_from(get_args(FeedbackAction)),
    st.sampled_from([0, 0, 1, 1, 2, 3, 4, 5]),  # mostly the chain, sometimes another grid
    st.integers(0, 20),  # a small pool of ids: replays happen
    st.sampled_from([None, *get_args(SourceType)]),
)
other_ops = [
    st.tuples(st.just("tick"), st.integers(0, 300)),
    st.tuples(st.just("tick"), st.integers(0, 300)),
    st.tuples(st.just("tick"), st.integers(0, 900)),
    st.tuples(st.just("stale"), st.integers(0, 100)),
    st.tuples(st.just("forged"), st.integers(-1, 1), st.integers(-1, 6)),
    st.tuples(st.just("join"), st.integers(0, 3)),
]
ops = st.lists(
    st.sampled_from([feedback_ops] * 4 + other_ops).flatmap(lambda strategy: strategy),
    min_size=10,
    max_size=60,
)


@dataclass
class Trace:
    policy: Policy
    task: Task
    events: list[TaskEvent]
    applied_steps: list[tuple[int, int]] = field(default_factory=list)
    schedule_lengths: dict[int, int] = field(default_factory=dict)


def _feedback(trace: Trace, op: tuple[Any, ...], now: datetime) -> list[TaskEvent]:
    kind, action, who, n, source = op
    task = trace.task
    allowed = sorted(a for (state, a) in TRANSITIONS if state == task.state)
    if kind == "legal" and allowed:
        action = allowed[get_args(FeedbackAction).index(action) % len(allowed)]
    level, grid = WORKERS[who]
    refusal = authorise(task, action, level, grid)
    if refusal is not None:
        expected = "wrong_grid" if LINEAGE.at(level) != grid else "not_reviewer"
        assert refusal.code == expected
        assert expected == "wrong_grid" or action in ("approve", "close", "reject")
        return []
    # only the chain acts, and only levels 2 and 1 review
    assert LINEAGE.at(level) == grid and (level < 3 or action not in ("approve", "close", "reject"))
    findings = Findings(source_found=source is not None, source_type=source) if action == "submit" else None
    fb = Feedback(
        feedback_id=f"F{n}",
        task_id=task.task_id,
        worker_id=f"W-{who}",
        action=action,
        at=now,
        findings=findings,
    )
    result = apply_feedback(task, fb, trace.policy, now)
    if isinstance(result, Refusal):
        assert result.code == "illegal_transition"
        assert (task.state, action) not in TRANSITIONS and fb.feedback_id not in task.applied_feedback
        return []
    new, events = result
    if fb.feedback_id in task.applied_feedback:  # replay: nothing at all
        assert (new, events) == (task, [])
        return []
    # (1) every accepted transition is in the table
    assert new.state == TRANSITIONS[(task.state, action)]
    assert new.applied_feedback[-1] == fb.feedback_id  # so a replay is recognised
    assert events[0].type != "departments_notified" and events[0].feedback_id == fb.feedback_id
    assert len(events) == (2 if action == "submit" and source else 1)
    if action == "reject":
        assert new.schedule_id == task.schedule_id + 1 and new.next_step == 0
        assert new.deadline_at == now + timedelta(seconds=trace.policy.feedback_deadline_s)
        trace.schedule_lengths[new.schedule_id] = len(new.schedule)
    trace.task = new
    return events


def _deadline(trace: Trace, cmd: DeadlineCommand, now: datetime) -> list[TaskEvent]:
    task = trace.task
    expected = due_command(task, now)
    new, events = apply_deadline(task, cmd, now)
    applies = expected is not None and (expected.schedule_id, expected.step) == (cmd.schedule_id, cmd.step)
    assert bool(events) == applies
    if not events:
        assert new == task
        return []
    # the acknowledgement reminder is passed over once acknowledged, never applied late
    assert cmd.step == live_step(task) >= task.next_step and new.next_step == cmd.step + 1
    assert all(x.only_unacknowledged for x in task.schedule[task.next_step : cmd.step])
    step = task.schedule[cmd.step]
    assert task.state == "dispatched" or not step.only_unacknowledged
    assert len(events) == 1 and events[0].type == ("reminded" if step.action == "remind" else "escalated")
    # the same command again is a no-op
    assert apply_deadline(new, cmd, now) == (new, [])
    # catch-up: whatever remains is never in the past
    assert all(step.at >= now for step in new.schedule[new.next_step :])
    trace.applied_steps.append((cmd.schedule_id, cmd.step))
    trace.task = new
    return events


def run(policy: Policy, script: list[tuple[Any, ...]]) -> Trace:
    now = T0
    task, first = dispatch(alarm(0), LINEAGE, policy, now)
    trace = Trace(policy, task, [first], schedule_lengths={1: len(task.schedule)})
    issued: list[DeadlineCommand] = []
    for op in script:
        before = trace.task
        kind = op[0]
        events: list[TaskEvent] = []
        if kind in ("feedback", "legal"):
            events = _feedback(trace, op, now)
        elif kind == "tick":
            now += timedelta(seconds=op[1])
            cmd = due_command(trace.task, now)
            if cmd is not None:
                issued.append(cmd)
                events = _deadline(trace, cmd, now)
                assert events, "a command just issued by due_command applies"
        elif kind == "stale" and issued:
            events = _deadline(trace, issued[op[1] % len(issued)], now)
            assert not events, "every issued command was applied already"
        elif kind == "forged":
            cmd = DeadlineCommand(
                task_id=before.task_id,
                station_id=before.station_id,
                schedule_id=before.schedule_id + op[1],
                step=op[2],
                due_at=now,
                issued_at=now,
            )
            events = _deadline(trace, cmd, now)
        elif kind == "join" and before.is_open:  # the owner joins only open tasks
            trace.task, events = join(before, alarm(op[1]), now)
        # (1) always a valid state; (5) closed accepts nothing
        assert trace.task.state in STATES
        if before.state == "closed":
            assert trace.task == before and events == []
        assert all(e.task_id == before.task_id and e.at == now for e in events)
        trace.events += events
    return trace


@settings(max_examples=300, deadline=None)
@given(policies, ops)
def test_random_sequences_keep_every_invariant(policy: Policy, script: list[tuple[Any, ...]]) -> None:
    trace = run(policy, script)
    task, events = trace.task, trace.events
    # (2) versions increase by exactly one per event, no gaps; ids are task:version
    assert [e.version for e in events] == list(range(1, len(events) + 1))
    assert task.version == len(events)
    assert [e.event_id for e in events] == [f"{task.task_id}:{e.version}" for e in events]
    assert [e.state for e in events][-1] == task.state
    # (4) each schedule step applied at most once, never more steps than scheduled
    counts = Counter(trace.applied_steps)
    assert all(c == 1 for c in counts.values())
    for sid, length in trace.schedule_lengths.items():
        assert sum(1 for s, _ in trace.applied_steps if s == sid) <= length
    assert task.reminders + task.escalations == len(trace.applied_steps)
    assert task.reminders == sum(e.type == "reminded" for e in events)
    assert task.escalations == sum(e.type == "escalated" for e in events)
    # (6) one level per escalation, 3 -> 2 -> 1, never above the policy's top level
    level = 3
    for e in events:
        if e.type == "escalated":
            assert e.level == level - 1
        else:
            assert e.level == level
        level = e.level
        assert e.level >= policy.top_level and e.grid_id == LINEAGE.at(e.level)
    assert task.escalations == 3 - task.level


@settings(max_examples=100, deadline=None)
@given(policies, ops)
def test_replaying_the_same_input_gives_the_same_task(policy: Policy, script: list[tuple[Any, ...]]) -> None:
    first, second = run(policy, script), run(policy, script)
    assert first.task == second.task
    assert first.events == second.events
    assert first.task.model_dump_json() == second.task.model_dump_json()


@settings(max_examples=200, deadline=None)
@given(policies, st.integers(0, 48 * 3600), st.lists(st.integers(0, 3600), min_size=1, max_size=12))
def test_sweeper_driven_task_walks_its_schedule_in_order(
    policy: Policy, downtime: int, gaps: list[int]
) -> None:
    """No feedback at all: only the sweeper. Steps apply in order, one per command, and the task
    ends at the policy's top level once the whole schedule has run."""
    task, _ = dispatch(alarm(0), LINEAGE, policy, T0)
    original: tuple[Step, ...] = task.schedule
    now = T0 + timedelta(seconds=downtime)

    def step_if_due() -> None:
        nonlocal task
        cmd = due_command(task, now)
        if cmd is not None:
            assert cmd.step == task.next_step and cmd.due_at <= now
            task, events = apply_deadline(task, cmd, now)
            kind = "reminded" if original[cmd.step].action == "remind" else "escalated"
            assert [e.type for e in events] == [kind]

    for gap in gaps:
        step_if_due()
        now += timedelta(seconds=gap)
    for _ in original:  # then a long quiet time: every remaining step comes due, one at a time
        now += timedelta(days=30)
        step_if_due()
    assert task.next_step == len(original)
    assert task.level == policy.top_level
    assert task.reminders == sum(x.action == "remind" for x in original)
    # shifting moves steps only later, and keeps their order
    assert all(a.at >= b.at for a, b in zip(task.schedule, original, strict=True))
    assert all(x.at <= y.at for x, y in itertools.pairwise(task.schedule))
