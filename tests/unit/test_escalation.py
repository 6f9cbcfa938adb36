"""Unit tests of airgrid.domain.escalation: policies, the policy book, schedules, catch-up shifts."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from airgrid.config.settings import DATA_DIR
from airgrid.domain.escalation import (
    Policy,
    PolicyBook,
    PolicyError,
    Selector,
    build_schedule,
    load_policy_book,
    shift_after,
)

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- Policy and build_schedule --------------------------------------------------------------------


def test_policy_defaults_are_the_seed_24_hours() -> None:
    p = Policy(name="x")
    assert (p.feedback_deadline_s, p.reminders_before_s, p.overdue_reminder) == (86_400, (7_200,), True)
    assert (p.escalate_after_s, p.top_level) == (14_400, 1)


@pytest.mark.parametrize(
    "bad",
    [
        {"feedback_deadline_s": 0},
        {"escalate_after_s": -1},
        {"top_level": 4},
        {"unknown": 1},
    ],
)
def test_policy_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Policy.model_validate({"name": "x", **bad})


def test_policy_is_frozen() -> None:
    with pytest.raises(ValidationError):
        Policy(name="x").name = "y"  # type: ignore[misc]


def test_standard_schedule_of_the_seed() -> None:
    deadline, steps = build_schedule(Policy(name="standard"), T0, 3)
    assert deadline == s(86_400)
    assert [(x.at, x.action, x.level, x.reason) for x in steps] == [
        (s(86_400 - 7_200), "remind", 3, "deadline approaching"),
        (s(86_400), "remind", 3, "feedback overdue"),
        (s(86_400 + 14_400), "escalate", 2, "no feedback, escalated to level 2"),
        (s(86_400 + 28_800), "escalate", 1, "no feedback, escalated to level 1"),
    ]


def test_reminders_run_earliest_first_and_skip_those_before_the_start() -> None:
    policy = Policy(name="x", feedback_deadline_s=100, reminders_before_s=(10, 60, 100, 150))
    _, steps = build_schedule(policy, T0, 3)
    reminders = [x.at for x in steps if x.reason == "deadline approaching"]
    assert reminders == [s(40), s(90)]  # 100 s and 150 s before would be at/before the start


def test_no_overdue_reminder_and_top_level_two() -> None:
    policy = Policy(name="x", feedback_deadline_s=100, reminders_before_s=(), overdue_reminder=False)
    policy = policy.model_copy(update={"top_level": 2, "escalate_after_s": 30})
    deadline, steps = build_schedule(policy, T0, 3)
    assert deadline == s(100)
    assert [(x.at, x.action, x.level) for x in steps] == [(s(130), "escalate", 2)]


@pytest.mark.parametrize(("level", "top", "levels"), [(3, 3, []), (2, 1, [1]), (1, 1, []), (2, 2, [])])
def test_escalation_climbs_from_the_current_level(level: int, top: int, levels: list[int]) -> None:
    policy = Policy.model_validate({"name": "x", "top_level": top})
    _, steps = build_schedule(policy, T0, level)
    assert [x.level for x in steps if x.action == "escalate"] == levels
    assert all(x.level == level for x in steps if x.action == "remind")


policies = st.builds(
    Policy,
    name=st.just("p"),
    feedback_deadline_s=st.floats(1, 1e6),
    reminders_before_s=st.lists(st.floats(1, 2e6), max_size=4).map(tuple),
    overdue_reminder=st.booleans(),
    escalate_after_s=st.floats(1, 1e6),
    top_level=st.sampled_from([1, 2, 3]),
)


@given(policies, st.sampled_from([1, 2, 3]))
def test_schedule_properties(policy: Policy, level: int) -> None:
    deadline, steps = build_schedule(policy, T0, level)
    assert deadline == T0 + timedelta(seconds=policy.feedback_deadline_s)
    assert all(a.at <= b.at for a, b in itertools.pairwise(steps))
    assert all(x.at > T0 for x in steps)
    escalations = [x for x in steps if x.action == "escalate"]
    # one level per step, from level - 1 up to the policy's top level, never beyond
    assert [x.level for x in escalations] == list(range(level - 1, policy.top_level - 1, -1))
    assert all(x.at > deadline for x in escalations)
    reminders = [x for x in steps if x.action == "remind"]
    assert all(x.at <= deadline and x.level == level for x in reminders)
    assert sum(x.at == deadline for x in reminders) == int(policy.overdue_reminder)


# --- shift_after --------------------------------------------------------------------------------


def test_shift_after_moves_only_later_steps() -> None:
    _, steps = build_schedule(Policy(name="x", feedback_deadline_s=100), T0, 3)
    shifted = shift_after(steps, 1, timedelta(minutes=5))
    assert shifted[:2] == steps[:2]
    assert [x.at for x in shifted[2:]] == [x.at + timedelta(minutes=5) for x in steps[2:]]
    assert [(x.action, x.level, x.reason) for x in shifted] == [(x.action, x.level, x.reason) for x in steps]


@pytest.mark.parametrize("delay", [timedelta(0), timedelta(seconds=-5)])
def test_shift_after_without_delay_changes_nothing(delay: timedelta) -> None:
    _, steps = build_schedule(Policy(name="x"), T0, 3)
    assert shift_after(steps, 0, delay) is steps


@given(policies, st.integers(0, 5), st.integers(1, 10**7))
def test_shift_keeps_the_gaps_between_later_steps(policy: Policy, index: int, delay_s: int) -> None:
    _, steps = build_schedule(policy, T0, 3)
    shifted = shift_after(steps, index, timedelta(seconds=delay_s))
    assert len(shifted) == len(steps)
    tail, old = shifted[index + 1 :], steps[index + 1 :]
    assert [b.at - a.at for a, b in itertools.pairwise(tail)] == [
        b.at - a.at for a, b in itertools.pairwise(old)
    ]
    assert all(x.at - y.at == timedelta(seconds=delay_s) for x, y in zip(tail, old, strict=True))


# --- PolicyBook ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> PolicyBook:
    return load_policy_book(DATA_DIR / "policy.toml")


@pytest.mark.parametrize(
    ("severity", "key_grid", "warning", "expected"),
    [
        ("major", False, "none", "standard"),
        ("major", True, "none", "key_grid"),
        ("critical", True, "orange", "warning"),  # first match wins: warning before key grid
        ("minor", False, "red", "warning"),
        ("major", True, "yellow", "key_grid"),
        ("info", False, "blue", "standard"),
    ],
)
def test_shipped_book_chooses(
    shipped: PolicyBook, severity: str, key_grid: bool, warning: str, expected: str
) -> None:
    assert shipped.choose(severity, key_grid, warning).name == expected


def test_shipped_book_values(shipped: PolicyBook) -> None:
    assert shipped.default == "standard"
    key = shipped.policies["key_grid"]
    assert (key.feedback_deadline_s, key.reminders_before_s, key.escalate_after_s) == (
        43_200,
        (10_800, 3_600),
        7_200,
    )
    assert shipped.policies["warning"].feedback_deadline_s == 21_600


def test_demo_book_loads_with_short_deadlines() -> None:
    book = load_policy_book(DATA_DIR / "policy-demo.toml")
    assert book.choose("major", False).feedback_deadline_s == 20
    assert book.choose("major", True).name == "key_grid"


def test_selector_severity_and_empty_fields() -> None:
    book = PolicyBook(
        policies={"a": Policy(name="a"), "b": Policy(name="b")},
        default="a",
        select=(Selector(policy="b", severity=("critical",), key_grid=False),),
    )
    assert book.choose("critical", False).name == "b"
    assert book.choose("critical", True).name == "a"
    assert book.choose("major", False).name == "a"
    assert Selector(policy="a").matches("info", True, "red")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[policies.standard\n", "policy.toml"),
        ('default = "nope"\n[policies.standard]\n', "policy 'nope' is not defined under [policies]"),
        ('[policies.standard]\n[[select]]\npolicy = "ghost"\n', "policy 'ghost' is not defined"),
        ('[policies.standard]\nfeedback_deadline_s = "soon"\n', "policies.standard.feedback_deadline_s"),
        ("[policies.standard]\nescalate_after_s = 0\n", "policies.standard.escalate_after_s"),
        ("[policies.standard]\nspeed = 1\n", "policies.standard.speed"),
        (
            '[policies.standard]\n[[select]]\npolicy = "standard"\nwarning = ["purple"]\n',
            "select.0.warning.0",
        ),
    ],
)
def test_load_policy_book_errors_name_the_field(tmp_path: Path, text: str, needle: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as err:
        load_policy_book(path)
    assert str(path) in str(err.value) and needle in str(err.value)


def test_load_policy_book_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"missing\.toml"):
        load_policy_book(tmp_path / "missing.toml")


def test_policy_name_defaults_to_its_table_key(tmp_path: Path) -> None:
    book = load_policy_book(write(tmp_path, "[policies.standard]\nfeedback_deadline_s = 60\n"))
    assert book.policies["standard"].name == "standard"
    assert book.choose("major", False).feedback_deadline_s == 60
