"""Task volume over history (``airgrid backtest --tasks``): the owner's dispatch, with and without
the regional logic, side by side.

``backtest.run`` replays the stations through the engine with the data's own time as the clock;
this observer feeds what it sees to two models of the task owner:

* **without** the regional logic: every opened grid alarm dispatches a task to its station's
  level-3 grid, unless the station has an open task, which the alarm then joins (``tasks.join``);
* **with** it: each station's closed hours and opened grid alarms go, hour by hour, to the
  ``RegionLogic`` of the station's region (domain/regional.py), and the owner applies its
  decisions: ``level3`` as above (local-excess alarms included), ``region`` joins the one task of
  the regional episode for the region's grid (dispatched first if none is open), ``suppressed``
  makes no task.

History holds no feedback, so tasks close by one of :data:`CLOSING_MODELS` (``deadline``: at the
feedback deadline after dispatch; ``cleared``: once its alarms cleared and that deadline passed).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from airgrid.domain.backtest import CST
from airgrid.domain.detection.compiled import RuleSet
from airgrid.domain.directory import Directory
from airgrid.domain.escalation import Policy, PolicyBook
from airgrid.domain.regional import (
    REGIONAL_RULE,
    Outcome,
    RegionalDispatch,
    RegionLogic,
    RegionState,
    alarm_hour,
    members,
    region_of,
)
from airgrid.domain.rules import Regional
from airgrid.domain.tasks import task_id_for
from airgrid.models.alarms import AlarmEvent
from airgrid.models.regions import RegionTask

CLOSING_MODELS = {
    "cleared": "a task closes once every alarm episode it holds has cleared (a region's task: its "
    "regional episode ended) and at least its policy's feedback deadline has passed since dispatch",
    "deadline": "a task closes at its policy's feedback deadline after dispatch (the grid fed back "
    "in time and the reviewer closed it), whether or not its alarms have cleared",
}
JOINING = "an alarm opened while its station's (region's) task is open joins that task"
ClosingModel = Literal["cleared", "deadline"]


def month_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, CST).strftime("%Y-%m")


def week_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, CST).strftime("%G-W%V")


@dataclass
class SimTask:
    """One task of the model: who owns it, where it went, when it opened and closed."""

    task_id: str
    owner: str  # the station, or the region of a region's task
    grid: str
    level: int
    policy: str
    rule: str  # the rule of the alarm that dispatched it
    local: bool  # dispatched by a local-excess alarm
    dispatched_at: float
    deadline: float  # dispatched_at + the policy's feedback deadline
    alarms: list[str] = field(default_factory=list)
    open_alarms: set[str] = field(default_factory=set)
    last_clear: float = 0.0
    closed_at: float | None = None

    def closes_by(self, now: float, model: ClosingModel) -> float | None:
        """When the closing model closes the task, if that is at or before ``now``."""
        if model == "deadline":
            return self.deadline if self.deadline <= now else None
        if self.open_alarms:
            return None
        at = max(self.deadline, self.last_clear)
        return at if at <= now else None


@dataclass
class Tally:
    """One station (or region) and month of one variant."""

    alarms: int = 0  # opened grid alarms decided (local excess included)
    local_alarms: int = 0
    tasks: int = 0  # tasks dispatched
    local_tasks: int = 0
    joined: int = 0  # alarms that joined the station's open task
    region: int = 0  # alarms that went to the region's task
    suppressed: int = 0


class OwnerModel:
    """The owner's dispatch and joins, one open task per station (or region) at a time."""

    def __init__(
        self,
        book: PolicyBook,
        directory: Directory,
        warning: str = "none",
        closing: ClosingModel = "deadline",
    ) -> None:
        self.closing: ClosingModel = closing
        self.book = book
        self.directory = directory
        self.warning = warning
        self.tasks: list[SimTask] = []
        self.open: dict[str, SimTask] = {}  # owner -> its open task
        self.holder: dict[str, SimTask] = {}  # alarm id -> the task holding it, until it clears
        self.cleared_early: set[str] = set()  # alarms that cleared before they were decided
        self.counts: Counter[str] = Counter()  # dispatched, joined, region, suppressed, region_tasks
        self.tallies: dict[tuple[str, str], Tally] = defaultdict(Tally)

    def current(self, owner: str, now: float) -> SimTask | None:
        task = self.open.get(owner)
        if task is not None:
            at = task.closes_by(now, self.closing)
            if at is not None:
                task.closed_at = at
                del self.open[owner]
                return None
        return task

    def _new(self, task_id: str, owner: str, grid: str, level: int, policy: Policy, now: float) -> SimTask:
        task = SimTask(
            task_id, owner, grid, level, policy.name, "", False, now, now + policy.feedback_deadline_s
        )
        self.tasks.append(task)
        self.open[owner] = task
        return task

    def _hold(self, task: SimTask, alarm_id: str, now: float) -> None:
        task.alarms.append(alarm_id)
        if alarm_id in self.cleared_early:
            self.cleared_early.discard(alarm_id)
            task.last_clear = max(task.last_clear, now)
        else:
            task.open_alarms.add(alarm_id)
            self.holder[alarm_id] = task

    def level3(self, alarm: AlarmEvent, now: float, *, local: bool = False) -> None:
        """An alarm for the station's level-3 grid: a new task, or it joins the open one."""
        owner = alarm.station_id
        tally = self.tallies[(owner, month_of(now))]
        tally.alarms += 1
        tally.local_alarms += local
        task = self.current(owner, now)
        if task is None:
            lineage = self.directory.lineage(owner)
            if lineage is None:
                raise ValueError(f"station {owner} is not in the grid directory")
            policy = self.book.choose(alarm.severity, lineage.key_grid, self.warning)
            task = self._new(task_id_for(alarm), owner, lineage.l3, 3, policy, now)
            task.rule, task.local = alarm.rule_id, local
            self.counts["dispatched"] += 1
            tally.tasks += 1
            tally.local_tasks += local
        else:
            self.counts["joined"] += 1
            tally.joined += 1
        self._hold(task, alarm.alarm_id, now)

    def region(self, alarm: AlarmEvent, rtask: RegionTask, now: float) -> None:
        """An alarm for the region's task of the regional episode (or the episode itself)."""
        owner = rtask.episode.station_id
        task = self.current(owner, now)
        if task is None:
            rp = self.book.regional.policy
            policy = self.book.policies[rp] if rp else self.book.choose("major", False, self.warning)
            # one open task per region at a time; a long episode gets a new one after each close
            stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d%H%M")
            task = self._new(f"T-{owner}-{stamp}", owner, rtask.grid, rtask.level, policy, now)
            task.rule = REGIONAL_RULE
            self.counts["region_tasks"] += 1
            self.tallies[(owner, month_of(now))].tasks += 1
        if alarm.alarm_id == rtask.episode.alarm_id:
            if alarm.alarm_id not in task.alarms:
                self._hold(task, alarm.alarm_id, now)
            return
        self.counts["region"] += 1
        tally = self.tallies[(alarm.station_id, month_of(now))]
        tally.alarms += 1
        tally.region += 1
        self._hold(task, alarm.alarm_id, now)

    def suppressed(self, station: str, now: float) -> None:
        self.counts["suppressed"] += 1
        tally = self.tallies[(station, month_of(now))]
        tally.alarms += 1
        tally.suppressed += 1

    def cleared(self, alarm_id: str, now: float) -> None:
        task = self.holder.pop(alarm_id, None)
        if task is None:
            self.cleared_early.add(alarm_id)
            return
        task.open_alarms.discard(alarm_id)
        task.last_clear = max(task.last_clear, now)

    def finish(self, now: float) -> None:
        """Close what the model closes by the end of the data; the rest stays open."""
        for owner in list(self.open):
            self.current(owner, now)
        self.cleared_early.clear()

    @property
    def still_open(self) -> int:
        return len(self.open)


@dataclass
class EpisodeStat:
    """One regional episode: its hours, peak background and what was decided while it held."""

    region: str
    since: float
    end: float
    hours: int = 0
    peak: float = 0.0  # highest hourly background of the episode pollutant
    load: float = 0.0  # sum of its hourly backgrounds (µg/m³ x h): how bad, length and height
    measured: int = 0  # hours with a background
    actions: Counter[str] = field(default_factory=Counter)  # decisions of its hours' alarms
    local: int = 0  # local-excess alarm episodes opened in its hours


class TaskReplay:
    """The ``backtest.run`` observer: station alarms and closed hours into both owner models."""

    def __init__(
        self,
        rules: RuleSet,
        cfg: Regional | None,
        directory: Directory,
        book: PolicyBook,
        dispatch: RegionalDispatch | None = None,
        warning: str = "none",
        closing: ClosingModel = "deadline",
    ) -> None:
        self.closing: ClosingModel = closing
        self.without = OwnerModel(book, directory, warning, closing)
        self.with_ = OwnerModel(book, directory, warning, closing)
        self.directory = directory
        self.regional = rules  # the station rules and the local-excess rules (rules.regional)
        self.dispatch: RegionalDispatch = dispatch or book.regional.dispatch
        self.logic: RegionLogic | None = None
        if cfg is not None:
            parents = {g.id: g.parent for g in directory.grids.values() if g.level == 2}
            self.logic = RegionLogic(cfg, members(directory, cfg.level), self.dispatch, parents)
        self.states: dict[str, RegionState] = {}
        self.since: dict[str, float | None] = {}
        self.local_rules = {r.id for r in self.regional.regional}
        self.episodes: dict[tuple[str, float], EpisodeStat] = {}
        self.opened = Counter[str]()  # opened grid alarms: "station" (engine), "local" (local excess)
        self.late = 0  # station hours that came after their region hour completed
        self.complete = Counter[bool]()  # region hours: every station of the region reporting or not
        self.end = 0.0

    # --- the observer -------------------------------------------------------------------------

    def station(
        self, now: float, station: str, events: list[AlarmEvent], closed: list[tuple[int, dict[str, float]]]
    ) -> None:
        self.end = max(self.end, now)
        region = self._region(station)
        for event in events:
            if event.route != "grid":
                continue
            if event.kind == "cleared":
                self.without.cleared(event.alarm_id, now)
                self.with_.cleared(event.alarm_id, now)
            elif event.kind == "opened":
                self.opened["station"] += 1
                self.without.level3(event, now)
                if self.logic is None or region is None:
                    self.with_.level3(event, now)
                else:
                    state = self.states.setdefault(region, RegionState())
                    out = self.logic.add_alarm(state, region, alarm_hour(event), event, self.regional, now)
                    self._apply(region, out, now)
        if self.logic is not None and region is not None:
            for h, values in closed:
                state = self.states.setdefault(region, RegionState())
                self._apply(
                    region, self.logic.add_hour(state, region, station, h, values, self.regional, now), now
                )

    def hour(self, now: float) -> None:
        if self.logic is None:
            return
        for region, state in self.states.items():
            if self.logic.tick_due(state, now):
                self._apply(region, self.logic.tick(state, region, self.regional, now), now)

    def finish(self) -> None:
        """Complete the hours still waiting, then close what the model closes by the end."""
        if self.logic is not None:
            flush = self.end + (self.logic.cfg.wait_hours + 2) * 3600.0
            for region, state in self.states.items():
                self._apply(region, self.logic.tick(state, region, self.regional, flush), self.end)
        self.without.finish(self.end)
        self.with_.finish(self.end)

    # --- the regional side ----------------------------------------------------------------------

    def _region(self, station: str) -> str | None:
        if self.logic is None:
            return None
        return region_of(self.directory, station, self.logic.cfg.level)

    def _apply(self, region: str, out: Outcome, now: float) -> None:
        assert self.logic is not None
        state = self.states[region]
        self.late += out.late
        for hr in out.hours:
            self.complete[hr.reporting >= hr.stations] += 1
            if hr.episode and hr.episode_since is not None:
                since = hr.episode_since.timestamp()
                stat = self.episodes.get((region, since))
                if stat is None:
                    stat = self.episodes[(region, since)] = EpisodeStat(region, since, since)
                stat.end = hr.hour_end.timestamp()
                stat.hours = round((stat.end - since) / 3600)
                bg = hr.background.get(self.logic.cfg.episode.pollutant, 0.0)
                stat.peak = max(stat.peak, bg)
                stat.load += bg
                stat.measured += bg > 0
        for alarm, rtask in out.dispatch:
            if rtask is None:
                local = alarm.rule_id in self.local_rules
                self.opened["local"] += local
                self.with_.level3(alarm, now, local=local)
            else:
                self.with_.region(alarm, rtask, now)
        for d in out.decisions:
            if d.action == "suppressed":
                self.with_.suppressed(d.station_id, now)
            verdict = state.verdicts.get(d.hour)
            stat = self.episodes.get((region, verdict)) if verdict is not None else None
            if stat is not None:
                stat.actions[d.action] += 1
                stat.local += d.rule_id in self.local_rules
        for alarm in out.alarms:
            if alarm.kind == "cleared":
                self.with_.cleared(alarm.alarm_id, now)
        before = self.since.get(region)
        if before is not None and state.since != before:  # the regional episode ended
            self.with_.cleared(self.logic.region_task(region, before, 0, 0.0, now).episode.alarm_id, now)
        self.since[region] = state.since
