"""The acknowledgement deadline: a reminder if a dispatched task is not acknowledged in time,
passed over (with no event) once it is; the warning level chooses the policy at dispatch."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from airgrid.config.settings import DATA_DIR
from airgrid.domain.escalation import Policy, build_schedule, load_policy_book
from airgrid.domain.tasks import apply_deadline, apply_feedback, dispatch, due_command, live_step
from airgrid.models.feedback import Feedback
from airgrid.models.tasks import Lineage, Task
from tests.unit import test_task_properties as props
from tests.unit.test_tasks_owner import T0, alarm

LINEAGE = Lineage(l3="L3-010102", l2="L2-0101", l1="L1-01")
POLICY = Policy(
    name="p", feedback_deadline_s=100, reminders_before_s=(20,), escalate_after_s=30, ack_deadline_s=10
)


def run_sweeper(task: Task, until_s: float) -> tuple[Task, list[str]]:
    notes: list[str] = []
    for t in range(int(until_s) + 1):
        now = T0 + timedelta(seconds=t)
        cmd = due_command(task, now)
        if cmd is not None:
            task, events = apply_deadline(task, cmd, now)
            notes += [f"{e.type}:{e.note}" for e in events]
    return task, notes


def test_ack_reminder_is_the_first_step_and_only_on_dispatch() -> None:
    _, steps = build_schedule(POLICY, T0, 3, ack=True)
    assert [(s.reason, (s.at - T0).total_seconds(), s.only_unacknowledged) for s in steps][:2] == [
        ("not acknowledged", 10, True),
        ("deadline approaching", 80, False),
    ]
    _, reopened = build_schedule(POLICY, T0, 3)  # after a reject: no acknowledgement to wait for
    assert all(not s.only_unacknowledged for s in reopened)
    # an acknowledgement deadline past the feedback deadline means nothing
    _, late = build_schedule(POLICY.model_copy(update={"ack_deadline_s": 500}), T0, 3, ack=True)
    assert all(not s.only_unacknowledged for s in late)


def test_unacknowledged_task_is_reminded_then_walks_the_chain() -> None:
    task, _ = dispatch(alarm(), LINEAGE, POLICY, T0)
    task, notes = run_sweeper(task, 200)
    assert notes == [
        "reminded:not acknowledged",
        "reminded:deadline approaching",
        "reminded:feedback overdue",
        "escalated:no feedback, escalated to level 2",
        "escalated:no feedback, escalated to level 1",
    ]
    assert task.version == 6


def test_acknowledged_task_skips_the_ack_reminder_without_an_event() -> None:
    task, _ = dispatch(alarm(), LINEAGE, POLICY, T0)
    fb = Feedback(feedback_id="f", task_id=task.task_id, worker_id="W", action="acknowledge", at=T0)
    result = apply_feedback(task, fb, POLICY, T0 + timedelta(seconds=5))
    assert not isinstance(result, type(None)) and isinstance(result, tuple)
    task, _ = result
    assert live_step(task) == 1 and task.next_step == 0
    stale = due_command(task, T0 + timedelta(seconds=81))
    assert stale is not None and stale.step == 1
    # a command for the skipped step (issued before the acknowledgement) is stale
    old = stale.model_copy(update={"step": 0})
    assert apply_deadline(task, old, T0 + timedelta(seconds=81)) == (task, [])
    task, notes = run_sweeper(task, 200)
    assert notes[0] == "reminded:deadline approaching" and "reminded:not acknowledged" not in notes


@given(st.floats(1, 99), st.sampled_from([1, 2, 3]))
def test_schedule_stays_ordered_with_an_ack_step(ack_s: float, top: int) -> None:
    policy = POLICY.model_copy(update={"ack_deadline_s": ack_s, "top_level": top})
    _, steps = build_schedule(policy, T0, 3, ack=True)
    assert [s.at for s in steps] == sorted(s.at for s in steps)
    assert sum(s.only_unacknowledged for s in steps) == 1


def test_warning_level_chooses_the_shipped_warning_policy() -> None:
    book = load_policy_book(DATA_DIR / "policy.toml")
    assert book.choose("major", False, "orange").name == "warning"
    assert book.choose("major", True, "none").name == "key_grid"
    task, _ = dispatch(alarm(), LINEAGE, book.choose("major", False, "red"), T0, warning="red")
    assert (task.policy, task.warning) == ("warning", "red")


# The random-sequence invariants of test_task_properties, run again with acknowledgement deadlines
ack_policies = st.tuples(props.policies, st.none() | st.integers(1, 400)).map(
    lambda pair: pair[0].model_copy(update={"ack_deadline_s": pair[1]})
)


@settings(max_examples=200, deadline=None)
@given(ack_policies, props.ops)
def test_random_sequences_with_an_ack_deadline_keep_every_invariant(
    policy: Policy, script: list[tuple[Any, ...]]
) -> None:
    props.test_random_sequences_keep_every_invariant.hypothesis.inner_test(policy, script)  # type: ignore[attr-defined]
    props.test_replaying_the_same_input_gives_the_same_task.hypothesis.inner_test(policy, script)  # type: ignore[attr-defined]
