"""Scheduled supervision (issue 17) without a broker: periods in the city's calendar, the
scheduler's requests, and the owner creating each grid's task of a period exactly once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from airgrid.config.settings import DATA_DIR
from airgrid.domain.directory import Directory
from airgrid.domain.supervision import Duty, period_of, slot_of, supervision_task_id
from airgrid.domain.tasks import authorise, station_of_task
from airgrid.models.feedback import Findings, SourceVisit
from airgrid.models.tasks import SuperviseCommand
from airgrid.stages.owner import TaskOwner
from airgrid.stages.supervision import SupervisionScheduler
from tests.unit.stage_fakes import FakeTopic, on
from tests.unit.test_tasks_owner import COMMANDS, deliver, events, make_owner

CN = ZoneInfo("Asia/Shanghai")
DIRECTORY = Directory.load(DATA_DIR / "grids.json")
# Wednesday 2026-12-02 10:00 China time
NOW = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)


def test_periods_follow_the_citys_calendar() -> None:
    week = period_of(Duty(every="week"), NOW, CN)
    assert [t.isoformat() for t in week] == ["2026-11-30T00:00:00+08:00", "2026-12-07T00:00:00+08:00"]
    month = period_of(Duty(every="month"), NOW, CN)
    assert [t.date().isoformat() for t in month] == ["2026-12-01", "2027-01-01"]
    quarter = period_of(Duty(every="quarter"), NOW, CN)
    assert [t.date().isoformat() for t in quarter] == ["2026-10-01", "2027-01-01"]
    day = period_of(Duty(every="day"), datetime(2026, 12, 1, 17, 0, tzinfo=UTC), CN)  # 01:00 on the 2nd
    assert day[0].isoformat() == "2026-12-02T00:00:00+08:00"
    fixed = period_of(Duty(every=None, every_s=20), datetime.fromtimestamp(1_000_005, UTC), CN)
    assert [t.timestamp() for t in fixed] == [1_000_000, 1_000_020]
    with pytest.raises(ValueError, match="exactly one"):
        Duty(every="week", every_s=5)


def test_key_grids_patrol_in_parts_of_the_period() -> None:
    duty = Duty(every="week", key_grid_times=2)
    first = slot_of("G", "patrol", duty, True, NOW, CN)  # Wednesday 10:00: first half
    assert (first.start.isoformat(), first.end.isoformat()) == (
        "2026-11-30T00:00:00+08:00",
        "2026-12-03T12:00:00+08:00",
    )
    second = slot_of("G", "patrol", duty, True, NOW + timedelta(days=2), CN)
    assert second.start == first.end and second.task_id != first.task_id
    plain = slot_of("G", "patrol", duty, False, NOW, CN)
    assert plain.end.isoformat() == "2026-12-07T00:00:00+08:00"
    assert plain.task_id == "T-G-P20261129160000"  # the period's start in UTC
    assert station_of_task(plain.task_id) == "G"


def owner_with(tmp_path: Path, supervision: str) -> TaskOwner:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        'default = "s"\n[policies.s]\nfeedback_deadline_s = 100\nreminders_before_s = [50]\n'
        "escalate_after_s = 20\n[policies.patrol]\nreminders_before_s = [86400]\nescalate_after_s = 3600\n"
        + supervision
    )
    return make_owner(policy)


class Scheduled:
    """A scheduler and an owner over one task table, as one worker runs them."""

    def __init__(self, tmp_path: Path, supervision: str, owns: Any = lambda grid: True) -> None:
        self.owner = owner_with(tmp_path, supervision)
        self.commands = FakeTopic()
        self.scheduler = SupervisionScheduler(
            directory=DIRECTORY,
            supervision=self.owner.policies.supervision,
            tasks=self.owner.tasks,
            commands=self.commands,
            clock=lambda: NOW,
            zone=CN,
            owns=owns,
        )

    async def apply_commands(self) -> None:
        for value in self.commands.sent:
            await self.owner.handle(on(COMMANDS, value))
        self.commands.sent.clear()
        await self.owner.finish()


PATROLS = (
    "[supervision]\nburst = 5000\n[supervision.patrol]\n"
    + 'every = "week"\nkey_grid_times = 2\npolicy = "patrol"\n'
)


async def test_every_level3_grid_gets_one_patrol_task_per_period_however_often_asked(tmp_path: Path) -> None:
    run = Scheduled(tmp_path, PATROLS)
    level3 = sorted(g.id for g in DIRECTORY.grids.values() if g.level == 3)
    assert await run.scheduler.sweep() == len(level3)
    # a kill before the owner applied them: a new scheduler (empty memory) asks again
    again = SupervisionScheduler(
        directory=DIRECTORY,
        supervision=run.owner.policies.supervision,
        tasks=run.owner.tasks,
        commands=run.commands,
        clock=lambda: NOW,
        zone=CN,
        owns=lambda grid: True,
    )
    assert await again.sweep() == len(level3)
    await run.apply_commands()
    dispatched = [e for e in events(run.owner) if e["type"] == "dispatched"]
    assert len(dispatched) == len(level3)  # each once, though asked twice
    assert {e["station_id"] for e in dispatched} == set(level3)
    assert {e["kind"] for e in dispatched} == {"patrol"}
    assert run.owner.m.supervision.labels("patrol", "exists")._value.get() == len(level3)
    assert await run.scheduler.sweep() == 0 and await again.sweep() == 0  # in the table now
    sample = dispatched[0]
    assert sample["level"] == 3 and sample["grid_id"] == sample["station_id"]
    assert sample["period_start"].startswith("2026-11-30T00:00:00") or sample["period_start"].startswith(
        "2026-11-29T16:00:00"
    )
    key = next(g for g in DIRECTORY.grids.values() if g.level == 3 and g.key)
    task = run.owner.task(
        slot_of(key.id, "patrol", Duty(every="week", key_grid_times=2), True, NOW, CN).task_id
    )
    assert task is not None and task.deadline_at is not None
    assert task.deadline_at.astimezone(CN).isoformat() == "2026-12-03T12:00:00+08:00"  # its half week
    assert [s.action for s in task.schedule][-2:] == ["escalate", "escalate"]  # to level 2, then 1


async def test_the_scheduler_asks_only_for_its_partitions_and_at_most_burst_per_pass(tmp_path: Path) -> None:
    mine = {g.id for g in DIRECTORY.grids.values() if g.level == 3 and g.id.endswith(("1", "3", "5"))}
    run = Scheduled(tmp_path, PATROLS.replace("burst = 5000", "burst = 50"), owns=mine.__contains__)
    passes = []
    while sent := await run.scheduler.sweep():
        passes.append(sent)
    assert max(passes) == 50 and sum(passes) == len(mine)  # over several passes: no burst
    assert await run.scheduler.sweep() == 0  # all asked a moment ago: not again before applied
    asked = {SuperviseCommand.model_validate_json(v).station_id for v in run.commands.sent}
    assert asked <= mine


async def test_reviews_and_reports_go_to_level2_and_level1_grids_whose_workers_act_on_them(
    tmp_path: Path,
) -> None:
    run = Scheduled(
        tmp_path,
        '[supervision.dispatch_review]\nevery = "month"\n[supervision.report]\nevery = "quarter"\n',
    )
    await run.scheduler.sweep()
    await run.apply_commands()
    dispatched = [e for e in events(run.owner) if e["type"] == "dispatched"]
    kinds = {(e["kind"], e["level"]) for e in dispatched}
    assert kinds == {("dispatch_review", 2), ("report", 1)}
    review = next(e for e in dispatched if e["kind"] == "dispatch_review")
    task = run.owner.task(review["task_id"])
    assert task is not None
    grid = task.station_id
    assert authorise(task, "submit", 2, grid) is None
    assert authorise(task, "submit", 3, f"L3-{grid[3:]}01") is not None


async def test_patrol_feedback_names_the_sources_visited(tmp_path: Path) -> None:
    run = Scheduled(tmp_path, PATROLS)
    await run.scheduler.sweep()
    await run.apply_commands()
    task_id = supervision_task_id(
        "L3-010102", "patrol", slot_of("L3-010102", "patrol", Duty(), False, NOW, CN).start
    )
    task = run.owner.task(task_id)
    assert task is not None
    from tests.unit.test_tasks_owner import feedback_cmd

    await deliver(run.owner, COMMANDS, feedback_cmd(task_id, "f1", "on_site", 1))
    findings = {
        "source_found": True,
        "sources_inspected": 2,
        "sources": [
            {"id": "SRC-1", "type": "construction_dust", "problem_found": True, "handled": True},
            {"type": "catering_fumes", "lon": 87.6, "lat": 43.8},
        ],
    }
    cmd = feedback_cmd(task_id, "f2", "submit", 2)
    fb = cmd.feedback.model_copy(update={"findings": Findings.model_validate(findings)})
    cmd = cmd.model_copy(update={"feedback": fb})
    await deliver(run.owner, COMMANDS, cmd)
    submitted = [e for e in events(run.owner) if e["type"] == "feedback_submitted"][-1]
    assert [s["type"] for s in submitted["findings"]["sources"]] == ["construction_dust", "catering_fumes"]
    assert submitted["kind"] == "patrol"
    assert (
        SourceVisit.model_validate(submitted["findings"]["sources"][1]).register_id
        == "catering_fumes@43.8000,87.6000"
    )
    with pytest.raises(ValueError, match="register id, or lon and lat"):
        SourceVisit.model_validate({"type": "industrial"})
