"""The deadline sweeper: a timer that reads the owner's tables and emits deadline commands.

Timers never write tables: the command goes to ``task-commands`` keyed by the owning station,
and the owner applies it once (stale commands are ignored by schedule id and step).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from airgrid.domain.tasks import due_command
from airgrid.models.codecs import encode
from airgrid.models.tasks import OutboxCommand, Task
from airgrid.worker.app import AirgridApp, Runtime

log = logging.getLogger(__name__)


class Sweeper:
    """One pass over the open tasks of this worker's partitions."""

    def __init__(self, app: Any, rt: Runtime) -> None:
        self.app = app
        self.rt = rt
        # (task, schedule, step) already emitted: a re-emit is harmless but noisy
        self.emitted: dict[tuple[str, int, int], float] = {}
        # outbox entries seen on the previous pass: one still there now was left by a crash
        self.outbox_seen: set[tuple[str, int]] = set()

    async def sweep(self) -> int:
        app, rt = self.app, self.rt
        if app.rebalancing or getattr(app, "in_recovery", False):
            return 0  # tables are being restored: their content is not yet the truth
        tasks, station_open = rt.tables["tasks"], rt.tables["station_open"]
        now = rt.clock()
        sent = 0
        lag = 0.0
        states: Counter[tuple[str, str]] = Counter()
        stuck: list[Task] = []
        for _station, task_id in list(station_open.items()):
            raw = tasks.get(task_id) if task_id else None
            if not raw:
                continue
            task = Task.model_validate(raw)
            if task.outbox:
                stuck.append(task)
            if not task.is_open:
                continue  # a closed task's pointer lingers only until its outbox is sent
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
        await self.ask_to_resend(stuck, now)
        if len(self.emitted) > 100_000:
            self.emitted.clear()
        rt.metrics.set_open_tasks(states)
        rt.metrics.sweeper_lag.set(lag)
        return sent

    async def ask_to_resend(self, pending: list[Task], now: Any) -> None:
        """An outbox is normally emptied within one flush; one seen on two passes in a row was
        left by a crash: ask the owner to send it (it re-checks; a second ask is a no-op)."""
        seen = {(t.task_id, t.version) for t in pending}
        for task in pending:
            if (task.task_id, task.version) in self.outbox_seen:
                cmd = OutboxCommand(
                    task_id=task.task_id, station_id=task.station_id, version=task.version, issued_at=now
                )
                await self.rt.topics["task_commands"].send(key=cmd.station_id.encode(), value=encode(cmd))
        self.outbox_seen = seen


def register(app: AirgridApp, rt: Runtime) -> None:
    sweeper = Sweeper(app, rt)

    async def sweep_deadlines() -> None:
        try:
            await sweeper.sweep()
        except Exception:  # a failed pass is retried on the next tick
            rt.metrics.internal_errors.labels("sweeper").inc()
            log.exception("deadline sweep failed")

    app.timer(rt.settings.sweep_interval_seconds, name="airgrid.sweeper")(sweep_deadlines)
