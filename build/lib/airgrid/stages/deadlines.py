"""The deadline sweeper: a timer's pass over the owner's tables that emits deadline commands.

Timers never write tables: the command goes to ``task-commands`` keyed by the owning station,
and the owner applies it once (stale commands are ignored by schedule id and step). An outbox seen
on two passes in a row was left by a crash: the sweeper asks the owner to send it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime

from airgrid.domain.tasks import due_command
from airgrid.metrics import Metrics
from airgrid.models.codecs import encode
from airgrid.models.tasks import OutboxCommand, Task
from airgrid.stages.ports import Clock, Outlet, Table

log = logging.getLogger(__name__)


class DeadlineSweeper:
    """One pass over the open tasks of this worker's partitions (``sweep``)."""

    def __init__(
        self,
        *,
        tasks: Table,
        station_open: Table,
        commands: Outlet,
        metrics: Metrics,
        clock: Clock,
        interval_s: float,
        tables_ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.tasks = tasks
        self.station_open = station_open
        self.commands = commands
        self.m = metrics
        self.clock = clock
        self.interval_s = interval_s
        self.tables_ready = tables_ready  # False while the tables are being restored
        # (task, schedule, step) already emitted: a re-emit is harmless but noisy
        self.emitted: dict[tuple[str, int, int], float] = {}
        # outbox entries seen on the previous pass: one still there now was left by a crash
        self.outbox_seen: set[tuple[str, int]] = set()

    async def sweep(self) -> int:
        """Emit the deadline commands that are due; how many."""
        if not self.tables_ready():
            return 0  # their content is not yet the truth
        now = self.clock()
        sent = 0
        lag = 0.0
        states: Counter[tuple[str, str]] = Counter()
        stuck: list[Task] = []
        for _station, task_id in list(self.station_open.items()):
            raw = self.tasks.get(task_id) if task_id else None
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
            if last is not None and now.timestamp() - last < 10 * self.interval_s:
                continue
            self.emitted[mark] = now.timestamp()
            await self.commands.send(key=task.station_id.encode(), value=encode(cmd))
            sent += 1
        await self.ask_to_resend(stuck, now)
        if len(self.emitted) > 100_000:
            self.emitted.clear()
        self.m.set_open_tasks(states)
        self.m.sweeper_lag.set(lag)
        return sent

    async def ask_to_resend(self, pending: list[Task], now: datetime) -> None:
        """An outbox is normally emptied within one flush; one seen on two passes in a row was
        left by a crash: ask the owner to send it (it re-checks; a second ask is a no-op)."""
        seen = {(t.task_id, t.version) for t in pending}
        for task in pending:
            if (task.task_id, task.version) in self.outbox_seen:
                cmd = OutboxCommand(
                    task_id=task.task_id, station_id=task.station_id, version=task.version, issued_at=now
                )
                await self.commands.send(key=cmd.station_id.encode(), value=encode(cmd))
        self.outbox_seen = seen
