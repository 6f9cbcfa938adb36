"""The deadline sweeper: a timer's pass over the owner's tables that emits deadline commands.

Timers never write tables: the command goes to ``task-commands`` keyed by the owning station,
and the owner applies it once (stale commands are ignored by schedule id and step). An outbox seen
on two passes in a row was left by a crash: the sweeper asks the owner to send it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from airgrid.domain.tasks import due_command, next_due_at
from airgrid.metrics import Metrics
from airgrid.models.codecs import encode
from airgrid.models.tasks import OutboxCommand, Task
from airgrid.stages.ports import Clock, Outlet, Table

log = logging.getLogger(__name__)


REBUILD_S = 60.0  # the index is read afresh from the tables this often, as a safety net


@dataclass(frozen=True, slots=True)
class Watch:
    """What the sweeper keeps of one task between passes: enough to count it and to know when
    it is due, without reading and validating the task again at every pass."""

    station_id: str
    version: int
    is_open: bool
    gauge: tuple[str, str]  # (level-1 grid, state), for the open-tasks gauge
    due_at: datetime | None  # when a deadline command is first due (None: never, as it is)
    outbox: bool  # events not yet known to be published

    @classmethod
    def of(cls, task: Task) -> Watch:
        return cls(
            station_id=task.station_id,
            version=task.version,
            is_open=task.is_open,
            gauge=(task.lineage.l1, task.state),
            due_at=next_due_at(task),
            outbox=bool(task.outbox),
        )


class DeadlineSweeper:
    """One pass over the open tasks of this worker's partitions (``sweep``).

    The tasks are read and validated once, into an index (task id -> ``Watch``); the owner tells
    the sweeper of every task it stores (``note``), so a pass reads a task from its table only when
    it is due. The index is rebuilt from the tables after a rebalance (a new consumer generation),
    after the tables were being restored, and every ``REBUILD_S``."""

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
        generation: Callable[[], object] = lambda: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tasks = tasks
        self.station_open = station_open
        self.commands = commands
        self.m = metrics
        self.clock = clock
        self.interval_s = interval_s
        self.tables_ready = tables_ready  # False while the tables are being restored
        self.generation = generation  # the consumer generation: the partitions this worker has
        self.monotonic = monotonic
        self.index: dict[str, Watch] | None = None  # None: to be read from the tables
        self.index_generation: object = None
        self.index_built_at = 0.0
        # (task, schedule, step) already emitted: a re-emit is harmless but noisy
        self.emitted: dict[tuple[str, int, int], float] = {}
        # outbox entries seen on the previous pass: one still there now was left by a crash
        self.outbox_seen: set[tuple[str, int]] = set()

    def note(self, task: Task) -> None:
        """The owner stored ``task``: its entry in the index follows (no table read)."""
        if self.index is None:
            return
        if task.is_open or task.outbox:
            self.index[task.task_id] = Watch.of(task)
        else:  # closed and published: the owner drops its station's pointer
            self.index.pop(task.task_id, None)

    def rebuild(self) -> dict[str, Watch]:
        """Every task the station pointers name, read and validated once."""
        index: dict[str, Watch] = {}
        for _station, task_id in list(self.station_open.items()):
            raw = self.tasks.get(task_id) if task_id else None
            if raw:
                index[task_id] = Watch.of(Task.model_validate(raw))
        self.index = index
        self.index_generation = self.generation()
        self.index_built_at = self.monotonic()
        self.m.sweeper_rebuilds.inc()
        return index

    def current_index(self) -> dict[str, Watch]:
        generation = self.generation()
        if (
            self.index is None
            or generation != self.index_generation
            or self.monotonic() - self.index_built_at >= REBUILD_S
        ):
            return self.rebuild()
        return self.index

    async def sweep(self) -> int:
        """Emit the deadline commands that are due; how many."""
        if not self.tables_ready():
            self.index = None  # their content is not yet the truth; read it afresh after
            return 0
        index = self.current_index()
        now = self.clock()
        sent = 0
        lag = 0.0
        states: Counter[tuple[str, str]] = Counter()
        stuck: list[tuple[str, Watch]] = []
        for task_id, watch in list(index.items()):
            if watch.outbox:
                stuck.append((task_id, watch))
            if not watch.is_open:
                continue  # a closed task's pointer lingers only until its outbox is sent
            states[watch.gauge] += 1
            if watch.due_at is None or watch.due_at > now:
                continue
            raw = self.tasks.get(task_id)
            if not raw:  # gone since (another worker's partition now): the next rebuild drops it
                continue
            task = Task.model_validate(raw)
            index[task_id] = Watch.of(task)
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

    async def ask_to_resend(self, pending: list[tuple[str, Watch]], now: datetime) -> None:
        """An outbox is normally emptied within one flush; one seen on two passes in a row was
        left by a crash: ask the owner to send it (it re-checks; a second ask is a no-op)."""
        seen = {(task_id, w.version) for task_id, w in pending}
        for task_id, w in pending:
            if (task_id, w.version) in self.outbox_seen:
                cmd = OutboxCommand(
                    task_id=task_id, station_id=w.station_id, version=w.version, issued_at=now
                )
                await self.commands.send(key=cmd.station_id.encode(), value=encode(cmd))
        self.outbox_seen = seen
