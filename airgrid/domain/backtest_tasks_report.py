"""What ``airgrid backtest --tasks`` prints and writes: tasks per station and month, per grid-week
and per month, with and without the regional logic, the worst regional episodes and the totals."""

from __future__ import annotations

import csv
from collections import defaultdict
from datetime import datetime
from typing import IO

from airgrid.domain.backtest import CST
from airgrid.domain.backtest_tasks import (
    CLOSING_MODELS,
    JOINING,
    EpisodeStat,
    SimTask,
    Tally,
    TaskReplay,
    month_of,
    week_of,
)


def render_tasks(replay: TaskReplay, out: IO[str]) -> None:
    """Per station and month, per grid-week, per month, the worst regional episodes, the totals."""
    wo, wi = replay.without, replay.with_
    print(f"task-closing model ({replay.closing}): {CLOSING_MODELS[replay.closing]}; {JOINING}", file=out)
    if replay.logic is None:
        print(
            "(the rules have no [regional] section: with = without; "
            "try --rules airgrid/config/data/rules-regional.toml)",
            file=out,
        )
    else:
        print(f"regional dispatch during an episode: {replay.dispatch}", file=out)
        hours = sum(replay.complete.values())
        print(
            f"region hours: {hours:,}, {replay.complete[True]:,} with every station of the region reporting; "
            f"station hours too late for their region hour: {replay.late:,}",
            file=out,
        )
    print("\ntasks per station (region) and month: without | with the regional logic", file=out)
    head = f"{'station':<12} {'month':<8} {'alarms':>6} {'tasks':>5} {'joined':>6} |"
    print(
        head + f" {'alarms':>6} {'tasks':>5} {'local':>5} {'joined':>6} {'region':>6} {'suppr':>5}", file=out
    )
    zero = Tally()
    for key in sorted({*wo.tallies, *wi.tallies}):
        a, b = wo.tallies.get(key, zero), wi.tallies.get(key, zero)
        print(
            f"{key[0]:<12} {key[1]:<8} {a.alarms:>6} {a.tasks:>5} {a.joined:>6} |"
            f" {b.alarms:>6} {b.tasks:>5} {b.local_tasks:>5} {b.joined:>6} {b.region:>6} {b.suppressed:>5}",
            file=out,
        )
    weeks: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for i, model in enumerate((wo, wi)):
        for t in model.tasks:
            weeks[(t.grid, week_of(t.dispatched_at))][i] += 1
    print(
        f"\ntasks per grid and ISO week: without | with\n{'grid':<16} {'week':<9} {'w/o':>5} {'with':>5}",
        file=out,
    )
    for (grid, week), (n0, n1) in sorted(weeks.items()):
        print(f"{grid:<16} {week:<9} {n0:>5} {n1:>5}", file=out)
    print(f"\ntasks per month: without | with\n{'month':<8} {'w/o':>5} {'with':>5}", file=out)
    for month, (n0, n1) in sorted(per_month(replay).items()):
        print(f"{month:<8} {n0:>5} {n1:>5}", file=out)
    if replay.episodes:
        render_episodes(replay, out)
    print(totals(replay), file=out)


def per_month(replay: TaskReplay) -> dict[str, list[int]]:
    """Month (China time) -> [tasks without, tasks with] the regional logic."""
    months: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for i, model in enumerate((replay.without, replay.with_)):
        for t in model.tasks:
            months[month_of(t.dispatched_at)][i] += 1
    return dict(months)


def worst_episodes(replay: TaskReplay, n: int = 5) -> list[EpisodeStat]:
    """The regional episodes with the highest background load (the sum of their hourly
    backgrounds: long and high), worst first."""
    return sorted(replay.episodes.values(), key=lambda e: (-e.load, e.since))[:n]


def render_episodes(replay: TaskReplay, out: IO[str]) -> None:
    eps = list(replay.episodes.values())
    hours = sum(e.hours for e in eps)
    alarms = sum(sum(e.actions.values()) for e in eps)
    local = sum(e.local for e in eps)
    print(
        f"\nregional episodes: {len(eps)} ({hours:,} hours), {alarms:,} opened grid alarms in their hours, "
        f"{local:,} of them local excess; the worst (sum of hourly backgrounds):",
        file=out,
    )
    pollutant = replay.logic.cfg.episode.pollutant if replay.logic is not None else ""
    print(
        f"{'region':<10} {'since (UTC+8)':<17} {'hours':>5} {'mean':>5} {'peak':>5} {'alarms':>6}"
        f" {'level3':>6} {'local':>5}   ({pollutant} background; alarms opened in its hours: to level-3"
        " grids, of them local excess)",
        file=out,
    )
    for e in worst_episodes(replay):
        since = datetime.fromtimestamp(e.since, CST).strftime("%Y-%m-%d %H:%M")
        mean = e.load / max(e.measured, 1)
        print(
            f"{e.region:<10} {since:<17} {e.hours:>5} {mean:>5.0f} {e.peak:>5.0f}"
            f" {sum(e.actions.values()):>6} {e.actions['level3']:>6} {e.local:>5}",
            file=out,
        )


def task_days(tasks: list[SimTask]) -> float:
    """Days the closed tasks were open, summed: the workload beside the count."""
    return sum(t.closed_at - t.dispatched_at for t in tasks if t.closed_at is not None) / 86400


def totals(replay: TaskReplay) -> str:
    wo, wi = replay.without, replay.with_
    c0, c1 = wo.counts, wi.counts
    local_tasks = sum(1 for t in wi.tasks if t.local)
    return (
        f"without the regional logic: {len(wo.tasks):,} tasks from {replay.opened['station']:,} opened grid "
        f"alarms (dispatched {c0['dispatched']:,}, joined {c0['joined']:,}); {task_days(wo.tasks):,.0f} "
        f"task-days open; still open at the end: {wo.still_open}\n"
        f"with it: {len(wi.tasks):,} tasks ({c1['dispatched']:,} level-3, {local_tasks:,} of them by local "
        f"excess; {c1['region_tasks']:,} region) from {replay.opened['station'] + replay.opened['local']:,} "
        f"opened grid alarms ({replay.opened['local']:,} local excess): dispatched {c1['dispatched']:,}, "
        f"joined {c1['joined']:,}, region {c1['region']:,}, suppressed {c1['suppressed']:,}; "
        f"{task_days(wi.tasks):,.0f} task-days open; still open at the end: {wi.still_open}"
    )


CSV_COLUMNS = (
    "variant",
    "task_id",
    "grid",
    "level",
    "owner",
    "policy",
    "rule",
    "local_excess",
    "dispatched_at",
    "closed_at",
    "alarms",
    "month",
    "week",
)


def write_tasks_csv(replay: TaskReplay, out: IO[str]) -> None:
    """One row per task of each variant (``without``, ``with``); times in China time."""
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for variant, model in (("without", replay.without), ("with", replay.with_)):
        for t in model.tasks:
            closed = "" if t.closed_at is None else datetime.fromtimestamp(t.closed_at, CST).isoformat()
            writer.writerow(
                [
                    variant,
                    t.task_id,
                    t.grid,
                    t.level,
                    t.owner,
                    t.policy,
                    t.rule,
                    int(t.local),
                    datetime.fromtimestamp(t.dispatched_at, CST).isoformat(),
                    closed,
                    len(t.alarms),
                    month_of(t.dispatched_at),
                    week_of(t.dispatched_at),
                ]
            )
