"""The deadline sweeper: a timer that reads the owner's tables and emits deadline commands.

Timers never write tables: the command goes to ``task-commands`` keyed by the owning station,
and the owner applies it once (stale commands are ignored by schedule id and step).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from airgrid.domain.tasks import due_command
from airgrid.models.tasks import Task
from airgrid.streams.app import AirgridApp, Runtime
from airgrid.streams.codecs import encode

log = logging.getLogger(__name__)


class Sweeper:
    """One pass over the open tasks of this worker's partitions."""

    def __init__(self, app: Any, rt: Runtime) -> None:
        self.app = app
        self.rt = rt
        # (task, schedule, step) already emitted: a re-emit is harmless but noisy
        self.emitted: dict[tuple[str, int, int], float] = {}

    async def sweep(self) -> int:
        app, rt = self.app, self.rt
        if app.rebalancing or getattr(app, "in_recovery", False):
            return 0  # tables are being restored: their content is not yet the truth
        tasks, station_open = rt.tables["tasks"], rt.tables["station_open"]
        now = rt.clock()
        sent = 0
        lag = 0.0
        states: Counter[tuple[str, str]] = Counter()
        for _station, task_id in list(station_open.items()):
            raw = tasks.get(task_id) if task_id else None
            if not raw:
                continue
            task = Task.model_validate(raw)
            states[(task.lineage.l1, task.state)] += 1
            cmd = due_command(task, now)
            if cmd is None:
                continue
            lag = max(lag, (now - cmd.due_at).total_seconds())
            mark = (cmd.task_id, cmd.schedule_id, cmd.step)
            last = self.emitted.get(mark)
            if last is not None and now.timestamp() - last < 10 * rt.settings.sweep_interval_seconds:
                continue
            self.emitted[mark] = now.timestamp()
            await rt.topics["task_commands"].send(key=task.station_id.encode(), value=encode(cmd))
            sent += 1
        if len(self.emitted) > 100_000:
            self.emitted.clear()
        gauge = rt.metrics.open_tasks
        gauge.clear()
        for (l1, state), count in states.items():
            gauge.labels(l1, state).set(count)
        rt.metrics.sweeper_lag.set(lag)
        return sent


def register(app: AirgridApp, rt: Runtime) -> None:
    sweeper = Sweeper(app, rt)

    async def sweep_deadlines() -> None:
        try:
            await sweeper.sweep()
        except Exception:  # a failed pass is retried on the next tick
            log.exception("deadline sweep failed")

    app.timer(rt.settings.sweep_interval_seconds, name="airgrid.sweeper")(sweep_deadlines)
