"""The supervision scheduler: a timer's pass that asks the owner for every supervision task the
grids owe now (policy ``[supervision]``: weekly patrols, monthly dispatch reviews, quarterly
reports), the same machinery as the deadline sweeper.

A timer never writes a table: it sends ``supervise`` to ``task-commands`` keyed by the grid, for
the grids whose partition this worker owns and whose task of the period is not in the table yet;
the owner creates the task unless it exists (its id names the grid, the duty and the period), so
a request sent twice, after a kill or by two workers across a rebalance, creates it once. At most
``burst`` requests go out per pass: after downtime, or at the start of a week, the tasks of a
thousand grids are created over a few passes, not in one burst. Periods missed during downtime
are not created afterwards (the reports show them missing).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from zoneinfo import ZoneInfo

from airgrid.domain.directory import Directory
from airgrid.domain.supervision import Supervision, slots
from airgrid.models.codecs import encode
from airgrid.models.tasks import SuperviseCommand
from airgrid.stages.ports import Clock, Outlet, Table

log = logging.getLogger(__name__)


class SupervisionScheduler:
    """``sweep`` once per ``interval_s``; ``owns(grid)``: this worker owns the grid's partition."""

    def __init__(
        self,
        *,
        directory: Directory,
        supervision: Supervision,
        tasks: Table,
        commands: Outlet,
        clock: Clock,
        zone: ZoneInfo,
        owns: Callable[[str], bool],
        interval_s: float = 30.0,
        tables_ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.directory = directory
        self.supervision = supervision
        self.tasks = tasks
        self.commands = commands
        self.clock = clock
        self.zone = zone
        self.owns = owns
        self.interval_s = interval_s
        self.tables_ready = tables_ready
        self.asked: dict[str, float] = {}  # task id -> when asked (not asked again at once)

    @property
    def enabled(self) -> bool:
        return any(True for _ in self.supervision.duties())

    async def sweep(self) -> int:
        """Ask for the tasks that are owed and not there yet; how many were asked for."""
        if not self.enabled or not self.tables_ready():
            return 0
        now = self.clock()
        now_ts = now.timestamp()
        sent = 0
        for slot, _duty in slots(self.directory, self.supervision, now, self.zone):
            if sent >= self.supervision.burst:
                break
            task_id = slot.task_id
            if not self.owns(slot.grid) or self.tasks.get(task_id) is not None:
                continue
            last = self.asked.get(task_id)
            if last is not None and now_ts - last < 10 * self.interval_s:
                continue  # asked a moment ago: the owner has not applied it yet
            cmd = SuperviseCommand(
                station_id=slot.grid,
                duty=slot.kind,
                period_start=slot.start,
                period_end=slot.end,
                issued_at=now,
            )
            await self.commands.send(key=slot.grid.encode(), value=encode(cmd))
            self.asked[task_id] = now_ts
            sent += 1
        if len(self.asked) > 100_000:
            self.asked.clear()
        if sent:
            log.info("supervision: asked for %d task(s)", sent)
        return sent
