"""Escalation policy as data: deadlines, reminders and the level-3 -> 2 -> 1 chain."""

from __future__ import annotations

import tomllib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from airgrid.domain.supervision import Supervision
from airgrid.models.common import Severity
from airgrid.models.tasks import Step
from airgrid.models.warnings import WarningLevel


class PolicyError(Exception):
    """The policy file is unreadable or wrong; the message names the field."""


class Policy(BaseModel):
    """Deadlines of one class of tasks, in seconds (the seed's default feedback deadline: 24 h)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    feedback_deadline_s: float = Field(86_400, gt=0)
    reminders_before_s: tuple[float, ...] = Field(
        (7_200,), description="reminders this long before the feedback deadline"
    )
    overdue_reminder: bool = Field(True, description="remind the grid when the deadline passes")
    escalate_after_s: float = Field(
        14_400, gt=0, description="after the deadline, escalate one level each time this passes"
    )
    top_level: Literal[1, 2, 3] = Field(1, description="escalate no higher than this level")
    ack_deadline_s: float | None = Field(
        None, gt=0, description="remind the grid if the task is not acknowledged within this"
    )


class Selector(BaseModel):
    """Which tasks a policy applies to; an empty field matches anything."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy: str
    severity: tuple[Severity, ...] = ()
    key_grid: bool | None = None
    warning: tuple[WarningLevel, ...] = ()

    def matches(self, severity: str, key_grid: bool, warning: str) -> bool:
        return (
            (not self.severity or severity in self.severity)
            and (self.key_grid is None or self.key_grid == key_grid)
            and (not self.warning or warning in self.warning)
        )


class RegionalPolicy(BaseModel):
    """Dispatch during a regional episode (the rules' ``[regional]`` section): what a grid alarm
    of a station of the region dispatches, other than a local-excess alarm (always its level-3
    grid). ``level3``: as without the regional logic; ``level2``/``level1``: one task per episode
    to the region's level-2 (or level-1) grid, which the alarms join; ``none``: no task."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dispatch: Literal["level3", "level2", "level1", "none"] = "none"
    policy: str | None = Field(None, description="deadlines of the region's task (default: selected)")


class PolicyBook(BaseModel):
    """Named policies and the ordered selectors that choose one; the first match wins."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default: str = "standard"
    policies: dict[str, Policy]
    select: tuple[Selector, ...] = ()
    regional: RegionalPolicy = Field(default_factory=RegionalPolicy)
    supervision: Supervision = Field(default_factory=Supervision)

    @model_validator(mode="after")
    def _names_exist(self) -> PolicyBook:
        extra = tuple(
            p for p in (self.regional.policy, *(d.policy for _, d in self.supervision.duties())) if p
        )
        for name in (self.default, *(s.policy for s in self.select), *extra):
            if name not in self.policies:
                raise ValueError(f"policy {name!r} is not defined under [policies]")
        return self

    def choose(self, severity: str, key_grid: bool, warning: str = "none") -> Policy:
        for sel in self.select:
            if sel.matches(severity, key_grid, warning):
                return self.policies[sel.policy]
        return self.policies[self.default]


def load_policy_book(path: Path) -> PolicyBook:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"policy file {path}: {exc}") from None
    policies = raw.get("policies", {})
    for name, body in policies.items():
        if isinstance(body, dict):
            body.setdefault("name", name)
    try:
        return PolicyBook.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PolicyError(f"policy file {path}: {where}: {first['msg']}") from None


def build_schedule(
    policy: Policy, start: datetime, level: int, *, ack: bool = False
) -> tuple[datetime, tuple[Step, ...]]:
    """The feedback deadline and the ordered steps for a task that becomes due from ``start``.

    ``level`` is the level responsible now; escalations climb from it to ``policy.top_level``.
    ``ack``: the task still awaits its acknowledgement (a fresh dispatch), so the policy's
    acknowledgement reminder is scheduled too; it only fires while the task is unacknowledged.
    """
    deadline = start + timedelta(seconds=policy.feedback_deadline_s)
    steps: list[Step] = []
    if ack and policy.ack_deadline_s is not None:
        at = start + timedelta(seconds=policy.ack_deadline_s)
        if at < deadline:
            steps.append(
                Step(at=at, action="remind", level=level, reason="not acknowledged", only_unacknowledged=True)  # type: ignore[arg-type]
            )
    for before in sorted(policy.reminders_before_s, reverse=True):
        at = deadline - timedelta(seconds=before)
        if at > start:
            steps.append(Step(at=at, action="remind", level=level, reason="deadline approaching"))  # type: ignore[arg-type]
    if policy.overdue_reminder:
        steps.append(Step(at=deadline, action="remind", level=level, reason="feedback overdue"))  # type: ignore[arg-type]
    at = deadline
    for target in range(level - 1, policy.top_level - 1, -1):
        at += timedelta(seconds=policy.escalate_after_s)
        steps.append(
            Step(
                at=at,
                action="escalate",
                level=target,
                reason=f"no feedback, escalated to level {target}",
            )  # type: ignore[arg-type]
        )
    # ordered by time (stable: at equal times the acknowledgement reminder comes first)
    return deadline, tuple(sorted(steps, key=lambda s: s.at))


def shift_after(steps: tuple[Step, ...], index: int, delay: timedelta) -> tuple[Step, ...]:
    """Push every step after ``index`` back by ``delay``: catching up after downtime one level at
    a time, so a task overdue for hours is not escalated to the top in a burst."""
    if delay <= timedelta(0):
        return steps
    return steps[: index + 1] + tuple(s.model_copy(update={"at": s.at + delay}) for s in steps[index + 1 :])
