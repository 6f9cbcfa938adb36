"""The regional background, local excess and regional episodes: pure, one region at a time.

In a regional episode (winter haze over the whole city) every station exceeds its limits at
once, and a task per station would send hundreds of grid workers after local sources that do not
exist. For each closed hour the region stage collects the hourly values of the region's stations
(a level-2 or level-1 grid) and, once the hour is complete, computes:

* the **background** of each pollutant: the median (or trimmed mean) of the valid values, given
  at least ``min_stations`` of them (stations without a value, or whose values were flagged or
  impossible, simply do not count);
* the **regional episode**: at least ``share`` of the reporting stations above ``above`` for
  ``open_hours`` hours opens it, ``clear_hours`` hours below that share end it;
* **local excess** (the ``local_excess`` rules): a station's value above the background by both
  margins for ``hours`` consecutive hours opens an alarm episode of that station;
* the **dispatch** of each opened grid alarm of the hour: ``level3`` (the station's level-3 grid,
  as without the regional logic) unless a regional episode holds; then a local-excess alarm
  still goes to ``level3``, any other goes to the region's one task (``dispatch = "level2"`` or
  ``"level1"``) or to nobody (``"none"``; subscribers still see the alarm).

An hour is complete, in order, when every active station reported it or a later hour. Active: a
station whose last input arrived less than ``wait_hours`` ago by the wall clock (a silent station
is waited for that long, then no more); before the region's first hour completes, every station of
the directory is waited for, up to ``wait_hours`` after the hour's first input. Arrival, not event
time, decides who is waited for: the stations' hours arrive out of order across the readings'
partitions, by hours during a backlog, and a station behind the others must not be left out. The
region sweep's ``tick`` re-checks open hours as stations fall silent. A station hour that
arrives after its hour completed is ``late``: counted, not used; an alarm of such an hour is
decided at once, with the episode verdict that hour had.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from airgrid.domain.detection.compiled import Rule, RuleSet
from airgrid.domain.detection.episodes import Emitter
from airgrid.domain.detection.hour import HOUR
from airgrid.domain.detection.state import Episode, StationState, episodes_from_json, episodes_to_json
from airgrid.domain.directory import Directory
from airgrid.domain.rules import Regional
from airgrid.models.alarms import AlarmEvent
from airgrid.models.regions import DispatchAction, DispatchDecision, RegionHour, RegionTask

TICK_AFTER_S = 60.0  # the sweep re-checks a region whose oldest open hour waited this long
VERDICT_HOURS = 72  # episode verdicts kept for alarms that arrive after their hour completed
REGIONAL_RULE = "regional_episode"
RegionalDispatch = Literal["level3", "level2", "level1", "none"]


def background(values: list[float], statistic: str, trim: float, min_stations: int) -> float | None:
    """The robust centre of the stations' values, settled to 1e-3; None with too few values."""
    n = len(values)
    if n < min_stations or n == 0:
        return None
    ordered = sorted(values)
    if statistic == "trimmed_mean":
        cut = math.floor(n * trim)
        kept = ordered[cut : n - cut] or ordered
        return round(sum(kept) / len(kept), 3)
    mid = n // 2
    centre = ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return round(centre, 3)


def excess_threshold(rule: Rule, bg: float) -> float:
    """The value a station must reach to be in local excess over background ``bg``."""
    return max(bg + rule.min_rise, bg * (1.0 + rule.factor))


def region_of(directory: Directory, station: str, level: int) -> str | None:
    """The region (level-2 or level-1 grid) of a station; None for an unknown station."""
    lineage = directory.lineage(station)
    if lineage is None:
        return None
    return lineage.l2 if level == 2 else lineage.l1


def members(directory: Directory, level: int) -> dict[str, int]:
    """How many stations of the directory each region has."""
    out: dict[str, int] = {}
    for station in directory.stations:
        region = region_of(directory, station, level)
        if region is not None:
            out[region] = out.get(region, 0) + 1
    return out


@dataclass(slots=True)
class RegionState:
    """What the region stage remembers of one region (a JSON-able table value)."""

    hours: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)  # open hours
    pending: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # alarms awaiting h
    first_seen: dict[int, float] = field(default_factory=dict)  # wall clock of an hour's first input
    done: int | None = None  # newest completed hour
    newest: int | None = None  # newest hour any station reported
    latest: dict[str, int] = field(default_factory=dict)  # station -> its newest hour reported
    arrived: dict[str, float] = field(default_factory=dict)  # station -> wall clock of its last input
    # hour -> the start of the regional episode that held after it (None: none), recent hours
    verdicts: dict[int, float | None] = field(default_factory=dict)
    runs: dict[str, dict[str, int]] = field(default_factory=dict)  # station -> rule -> hours
    episodes: dict[str, dict[str, Episode]] = field(default_factory=dict)  # local excess
    streak: int = 0  # consecutive hours at or above the episode share
    calm: int = 0  # consecutive hours below it, while the episode holds
    since: float | None = None  # start of the episode's first hour (None: no episode)

    def to_json(self) -> dict[str, Any]:
        return {
            "h": {str(h): v for h, v in self.hours.items()},
            "p": {str(h): v for h, v in self.pending.items()},
            "fs": {str(h): v for h, v in self.first_seen.items()},
            "d": self.done,
            "n": self.newest,
            "l": self.latest,
            "a": self.arrived,
            "v": {str(h): v for h, v in self.verdicts.items()},
            "r": self.runs,
            "e": {s: episodes_to_json(e) for s, e in self.episodes.items()},
            "st": [self.streak, self.calm, self.since],
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> RegionState:
        if not raw:
            return cls()
        streak, calm, since = raw.get("st", [0, 0, None])
        return cls(
            hours={int(h): v for h, v in raw.get("h", {}).items()},
            pending={int(h): list(v) for h, v in raw.get("p", {}).items()},
            first_seen={int(h): float(v) for h, v in raw.get("fs", {}).items()},
            done=raw.get("d"),
            newest=raw.get("n"),
            latest=dict(raw.get("l", {})),
            arrived=dict(raw.get("a", {})),
            verdicts={int(h): v for h, v in raw.get("v", {}).items()},
            runs={s: dict(v) for s, v in raw.get("r", {}).items()},
            episodes={s: episodes_from_json(e) for s, e in raw.get("e", {}).items()},
            streak=streak,
            calm=calm,
            since=since,
        )


@dataclass
class Outcome:
    """What one input changed: records for ``regions``, alarm events for ``alarms``, and dispatch
    commands (alarm, region task or None) for the owner."""

    hours: list[RegionHour] = field(default_factory=list)
    decisions: list[DispatchDecision] = field(default_factory=list)
    alarms: list[AlarmEvent] = field(default_factory=list)
    dispatch: list[tuple[AlarmEvent, RegionTask | None]] = field(default_factory=list)
    late: int = 0
    duplicate: int = 0

    @property
    def empty(self) -> bool:
        return not (self.hours or self.decisions or self.alarms or self.dispatch)


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class RegionLogic:
    """The regional rules of one deployment; every method takes the region's state and mutates it."""

    def __init__(
        self,
        cfg: Regional,
        sizes: Mapping[str, int],
        dispatch: RegionalDispatch = "none",
        parents: Mapping[str, str | None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.sizes = sizes  # region -> stations in the directory
        self.dispatch = dispatch  # during a regional episode
        self.parents = parents or {}  # region -> its level-1 grid (level-2 regions)

    # --- inputs -----------------------------------------------------------------------------

    def add_hour(
        self,
        state: RegionState,
        region: str,
        station: str,
        hour: int,
        values: Mapping[str, float],
        rules: RuleSet,
        now_ts: float,
    ) -> Outcome:
        out = Outcome()
        state.arrived[station] = now_ts
        if state.done is not None and hour <= state.done:
            state.latest[station] = max(hour, state.latest.get(station, hour))  # waited for next
            out.late = 1
            return out
        slot = state.hours.setdefault(hour, {})
        if station in slot:
            out.duplicate = 1  # a replay (a restart re-sends the same closed hour)
            return out
        slot[station] = {p: float(v) for p, v in values.items() if p in self.cfg.pollutants}
        state.first_seen.setdefault(hour, now_ts)
        state.newest = hour if state.newest is None else max(state.newest, hour)
        state.latest[station] = max(hour, state.latest.get(station, hour))
        self._complete_ready(state, region, rules, now_ts, out)
        return out

    def _complete_ready(
        self, state: RegionState, region: str, rules: RuleSet, now_ts: float, out: Outcome
    ) -> None:
        target = None
        for h in sorted({*state.hours, *state.pending}):
            if not self.complete(state, region, h, now_ts):
                break
            target = h
        if target is not None:
            self._complete(state, region, target, rules, now_ts, out)

    def complete(self, state: RegionState, region: str, h: int, now_ts: float) -> bool:
        """Every active station reported hour ``h`` or a later one (see the module)."""
        wait = self.cfg.wait_hours * HOUR
        if state.done is None and now_ts - state.first_seen.get(h, now_ts) < wait:
            reported = sum(1 for latest in state.latest.values() if latest >= h)
            if reported < self.sizes.get(region, 0):
                return False
        active = (s for s, at in state.arrived.items() if now_ts - at < wait)
        return all(state.latest.get(s, h) >= h for s in active)

    def add_alarm(
        self, state: RegionState, region: str, hour: int, alarm: AlarmEvent, rules: RuleSet, now_ts: float
    ) -> Outcome:
        out = Outcome()
        if state.done is not None and hour <= state.done:
            self._decide(region, hour, alarm, state.verdicts.get(hour), now_ts, out)
            return out
        waiting = state.pending.setdefault(hour, [])
        if any(a.get("alarm_id") == alarm.alarm_id for a in waiting):
            out.duplicate = 1
            return out
        waiting.append(alarm.model_dump(mode="json"))
        state.first_seen.setdefault(hour, now_ts)
        return out

    def tick(self, state: RegionState, region: str, rules: RuleSet, now_ts: float) -> Outcome:
        """Complete the open hours that no active station holds back any more (the stations
        they waited for fell silent)."""
        out = Outcome()
        self._complete_ready(state, region, rules, now_ts, out)
        return out

    def tick_due(self, state: RegionState, now_ts: float) -> bool:
        """Cheap look for the sweep: an hour open for ``TICK_AFTER_S`` may be held back by a
        station that fell silent since."""
        return any(now_ts - seen >= TICK_AFTER_S for seen in state.first_seen.values())

    # --- completion -------------------------------------------------------------------------

    def _complete(
        self, state: RegionState, region: str, target: int, rules: RuleSet, now_ts: float, out: Outcome
    ) -> None:
        ready = sorted(h for h in {*state.hours, *state.pending} if h <= target)
        for h in ready:
            self._close_hour(state, region, h, rules, now_ts, out)
        if ready:
            state.done = max(ready) if state.done is None else max(state.done, max(ready))
            for old in [h for h in state.verdicts if h <= state.done - VERDICT_HOURS]:
                del state.verdicts[old]

    def _close_hour(
        self, state: RegionState, region: str, h: int, rules: RuleSet, now_ts: float, out: Outcome
    ) -> None:
        stations = state.hours.pop(h, {})
        pending = state.pending.pop(h, [])
        state.first_seen.pop(h, None)
        cfg = self.cfg
        bg: dict[str, float] = {}
        counts: dict[str, int] = {}
        for p in cfg.pollutants:
            vals = [v[p] for v in stations.values() if p in v]
            if vals:
                counts[p] = len(vals)
            centre = background(vals, cfg.statistic, cfg.trim, cfg.min_stations)
            if centre is not None:
                bg[p] = centre
        share = self._episode_step(state, region, h, stations, now_ts, out)
        state.verdicts[h] = state.since
        excess = self._local_excess(state, region, h, stations, bg, rules, now_ts, out)
        for raw in pending:
            alarm = AlarmEvent.model_validate(raw)
            self._decide(region, h, alarm, state.since, now_ts, out)
        if stations:
            out.hours.append(
                RegionHour(
                    region=region,
                    level=cfg.level,
                    hour_start=_dt(h * HOUR),
                    hour_end=_dt((h + 1) * HOUR),
                    stations=self.sizes.get(region, 0),
                    reporting=len(stations),
                    statistic=cfg.statistic,
                    background=bg,  # type: ignore[arg-type]
                    counts=counts,  # type: ignore[arg-type]
                    share_above=share,
                    episode=state.since is not None,
                    episode_since=None if state.since is None else _dt(state.since),
                    local_excess=excess,
                    emitted_at=_dt(now_ts),
                )
            )

    def _episode_step(
        self,
        state: RegionState,
        region: str,
        h: int,
        stations: Mapping[str, Mapping[str, float]],
        now_ts: float,
        out: Outcome,
    ) -> float | None:
        """Update the regional episode with hour ``h``; the share of stations above the limit."""
        ep = self.cfg.episode
        vals = [v[ep.pollutant] for v in stations.values() if ep.pollutant in v]
        if len(vals) < ep.min_stations:
            return None  # too few stations say nothing: the episode stays as it was
        share = round(sum(1 for v in vals if v > ep.above) / len(vals), 4)
        if share >= ep.share:
            state.streak += 1
            state.calm = 0
            if state.since is None and state.streak >= ep.open_hours:
                state.since = float((h - ep.open_hours + 1) * HOUR)
                if self.dispatch in ("level2", "level1"):
                    task = self.region_task(region, state.since, h, share, now_ts)
                    out.dispatch.append((task.episode, task))
        else:
            state.streak = 0
            if state.since is not None:
                state.calm += 1
                if state.calm >= ep.clear_hours:
                    state.since = None
                    state.calm = 0
        return share

    def region_task(self, region: str, since: float, h: int, share: float, now_ts: float) -> RegionTask:
        """The region's task of the episode that started at ``since`` (deterministic ids)."""
        ep = self.cfg.episode
        stamp = _dt(since).strftime("%Y%m%dT%H%MZ")
        alarm_id = f"{region}:{REGIONAL_RULE}:{stamp}"
        episode = AlarmEvent(
            event_id=f"{alarm_id}:1",
            alarm_id=alarm_id,
            kind="opened",
            station_id=region,
            rule_id=REGIONAL_RULE,
            pollutant=ep.pollutant,
            severity="major",
            route="grid",
            value=share,
            threshold=ep.share,
            period="1h",
            window_start=_dt(h * HOUR),
            window_end=_dt((h + 1) * HOUR),
            opened_at=_dt(since),
            emitted_at=_dt(now_ts),
        )
        parent = self.parents.get(region)
        if self.dispatch == "level1" and self.cfg.level == 2 and parent is not None:
            return RegionTask(grid=parent, level=1, parent=None, episode=episode)
        return RegionTask(grid=region, level=self.cfg.level, parent=parent, episode=episode)

    def _local_excess(
        self,
        state: RegionState,
        region: str,
        h: int,
        stations: Mapping[str, Mapping[str, float]],
        bg: Mapping[str, float],
        rules: RuleSet,
        now_ts: float,
        out: Outcome,
    ) -> list[str]:
        """Step every local-excess rule for every station of the hour; the stations in excess."""
        found: list[str] = []
        for station in sorted({*stations, *state.runs, *state.episodes}):
            values = stations.get(station, {})
            runs = state.runs.setdefault(station, {})
            episodes = state.episodes.setdefault(station, {})
            holder = StationState(episodes=episodes)
            emitter = Emitter(holder, station, rules, now_ts, None)
            emitter.window = (float(h * HOUR), float((h + 1) * HOUR))
            for rule in rules.regional:
                v = values.get(rule.pollutant)
                base = bg.get(rule.pollutant)
                if v is None or base is None:
                    runs.pop(rule.id, None)  # no value or no background: the run is broken
                    continue
                thr = excess_threshold(rule, base)
                above = v >= thr
                n = runs[rule.id] = runs.get(rule.id, 0) + 1 if above else 0
                if above:
                    found.append(station)
                if n >= rule.hours or rule.id in episodes:
                    emitter.step(rule, rule.id, n >= rule.hours, not above, v, thr)
            for event in emitter.events:
                out.alarms.append(event)
                if event.kind == "opened":
                    self._decide(region, h, event, state.since, now_ts, out, local=True)
            if not runs:
                del state.runs[station]
            if not episodes:
                del state.episodes[station]
        return sorted(set(found))

    def _decide(
        self,
        region: str,
        h: int,
        alarm: AlarmEvent,
        since: float | None,
        now_ts: float,
        out: Outcome,
        *,
        local: bool = False,
    ) -> None:
        """The dispatch of one opened grid alarm of hour ``h``; ``since``: the start of the
        regional episode that held after that hour (None: none)."""
        action: DispatchAction = "level3"
        if since is not None and not local and self.dispatch != "level3":
            action = "suppressed" if self.dispatch == "none" else "region"
        if action == "level3":
            out.dispatch.append((alarm, None))
        elif action == "region" and since is not None:
            out.dispatch.append((alarm, self.region_task(region, since, h, self.cfg.episode.share, now_ts)))
        out.decisions.append(
            DispatchDecision(
                region=region,
                alarm_id=alarm.alarm_id,
                station_id=alarm.station_id,
                rule_id=alarm.rule_id,
                hour=h,
                hour_start=_dt(h * HOUR),
                action=action,
                episode=since is not None,
                emitted_at=_dt(now_ts),
            )
        )


def alarm_hour(alarm: AlarmEvent) -> int:
    """The hour whose evaluation opened ``alarm``: the hour ending at its window's end."""
    return math.ceil(alarm.window_end.timestamp() / HOUR) - 1
