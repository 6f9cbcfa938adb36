"""The task owner: one writer per station partition. Turns alarms into tasks (dispatch) and
applies feedback and deadline commands (re-keyed to this partition) to the task state machine.

Exactly-once effects under SIGKILL, without Kafka transactions (an outbox in the task's value):
1. a new task's pointer (``station-open-task``) is written, and the task with its pending events
   (``Task.outbox``) in the same value, so state and events are durable together; one wait until
   the changelogs have both (a single flush per task change);
2. the events are sent and their acks awaited; then the task is written without its outbox
   (and a closed task's pointer dropped).
A crash before 1 completes published nothing: the source offset was not committed (the consumer waits
for the producer's writes before it commits), the message is re-delivered and applied to the same state,
giving the same version and event ids. If only the task reached its changelog, not the pointer,
the re-delivered alarm finds the task by its id, restores the pointer and sends the outbox.
A crash during 2 leaves the outbox; before the task is touched again (or on the sweeper's
``outbox`` command) the owner reads back the tail of the task-events partition and sends only
the events that are not there. A re-delivered command whose effect is in the table is a no-op
(schedule id and step, feedback ids, alarm ids), so a deadline step is never applied twice under
two versions.

Group commit: the stage stages the changes of every event the driver has at hand (the stream's queue is
not empty) and makes them durable with one flush, then publishes all their events and waits for
the acks once (``finish``). A task changed twice in a batch keeps one outbox with both changes'
events in order. Faust may commit the staged events' offsets before ``finish``; the consumer waits
for the changelog writes first, so their outboxes are durable and a crash leaves them to the
sweeper, as in step 2.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import Any

import orjson

from airgrid.domain import tasks as machine
from airgrid.domain.detection.warnings import StationWarnings
from airgrid.domain.directory import NO_UPWIND, Directory, Upwind
from airgrid.domain.escalation import PolicyBook
from airgrid.domain.supervision import lineage_of_grid, supervision_task_id
from airgrid.metrics import Metrics
from airgrid.models.alarms import AlarmEvent
from airgrid.models.codecs import encode, first_line, rejection
from airgrid.models.dlq import Origin
from airgrid.models.regions import DispatchCommand
from airgrid.models.tasks import (
    DeadlineCommand,
    FeedbackCommand,
    OutboxCommand,
    SuperviseCommand,
    Task,
    TaskEvent,
)
from airgrid.stages.ports import Clock, Delivery, Outlet, Table, refuse

log = logging.getLogger(__name__)
BATCH_MAX = 200  # task changes per group commit
BATCH_MAX_S = 0.05  # the oldest staged change waits at most this long before its flush


class TaskOwner:
    """Applies alarms and commands to the owner's tables; task events leave through the outbox.

    ``handle`` stages the change a message asks for (the task and its pending events stored
    together); ``finish`` makes every staged change durable with one flush, publishes their events
    and clears the outboxes (the group commit). The driver calls ``finish`` when ``due`` says so.
    """

    def __init__(
        self,
        *,
        tasks: Table,
        station_open: Table,
        events: Outlet,
        rejected: Outlet,
        alarms_dlq: Outlet,
        commands_dlq: Outlet,
        alarms_topic: str,
        directory: Directory,
        policies: PolicyBook,
        warnings: StationWarnings,
        metrics: Metrics,
        clock: Clock,
        flush: Callable[[], Awaitable[None]],
        co_notify_radius_km: float = 0.0,
        upwind: Upwind = NO_UPWIND,
        published: Callable[[bytes], Awaitable[set[str]]] | None = None,
        release: Callable[[], None] = lambda: None,
        current_event: Callable[[], Any] = lambda: None,
        writing_as: Callable[[Any], AbstractContextManager[None]] = lambda event: nullcontext(),
        stored: Callable[[Task], None] = lambda task: None,
        regional: bool = False,
    ) -> None:
        self.tasks = tasks
        self.station_open = station_open
        self.stored = stored  # told of every task written (the deadline sweeper's index)
        # the regional logic is on: the region stage decides each grid alarm's dispatch
        # (``dispatch`` commands); the alarms topic itself dispatches nothing
        self.regional = regional
        self.events = events
        self.rejected = rejected
        self.alarms_dlq = alarms_dlq
        self.commands_dlq = commands_dlq
        self.alarms_topic = alarms_topic
        self.directory = directory
        self.policies = policies
        self.warnings = warnings
        self.m = metrics
        self.clock = clock
        self.flush = flush  # waits until every buffered message (changelogs too) is acked
        self.co_notify_radius_km = co_notify_radius_km
        self.upwind = upwind  # upwind co-notification: by the alarm's wind (docs/tasks.md)
        self.published = published  # event ids already in the key's task-events partition
        self.release = release  # sends the producer's lingering batches now
        self.current_event = current_event  # the stream event being processed (opaque)
        self.writing_as = writing_as  # table writes on behalf of that event (its partition)
        # task id -> its newest staged version (outbox not sent) and the event that staged it
        self.staged: dict[str, tuple[Task, Any]] = {}
        self.order: list[tuple[str, list[TaskEvent], tuple[str, ...]]] = []  # in staging order
        self.first_staged_at = 0.0

    async def handle(self, msg: Delivery) -> None:
        """Stage what ``msg`` asks for. An unreadable message goes to its dead-letter topic; any
        other failure raises (it is not the message's fault: the driver retries it)."""
        try:
            action = self.parse(msg)
        except ValueError as exc:  # JSON or validation: the message itself is invalid
            # only airgrid writes these topics; a bad message is a bug or a foreign writer
            on_alarms = msg.topic == self.alarms_topic
            reason = f"unreadable message on {msg.topic}: {first_line(exc)}"
            outlet = self.alarms_dlq if on_alarms else self.commands_dlq
            await refuse(outlet, msg, "unreadable", reason, self.clock())
            self.m.dlq.labels("alarms" if on_alarms else "commands", "unreadable").inc()
            return
        if action is not None:
            await action(self.clock())

    def parse(self, msg: Delivery) -> Callable[[datetime], Awaitable[None]] | None:
        """What the message asks of the owner; a ValueError when the message itself is invalid."""
        data = orjson.loads(msg.value or b"")
        if not isinstance(data, dict):
            raise ValueError(f"a JSON object was expected, not {type(data).__name__}")
        kind = data.get("kind")
        if msg.topic == self.alarms_topic:
            # only an opened grid alarm can dispatch or join a task: skip the rest unparsed
            if kind != "opened" or data.get("route") != "grid" or self.regional:
                return None
            alarm = AlarmEvent.model_validate(data)
            return lambda now: self.on_alarm(alarm, now)
        if kind == "deadline":
            deadline = DeadlineCommand.model_validate(data)
            return lambda now: self.on_deadline(deadline, now)
        if kind == "outbox":
            outbox = OutboxCommand.model_validate(data)
            return lambda now: self.on_outbox(outbox)
        if kind == "dispatch":
            dispatch = DispatchCommand.model_validate(data)
            return lambda now: self.on_dispatch(dispatch, now)
        if kind == "supervise":
            supervise = SuperviseCommand.model_validate(data)
            return lambda now: self.on_supervise(supervise, now)
        feedback = FeedbackCommand.model_validate(data)
        return lambda now: self.on_feedback(feedback, now)

    def due(self, queue_empty: bool, now: float) -> bool:
        """Time for ``finish``: changes are staged and the stream has nothing more at hand, or the
        batch is full, or its oldest change has waited ``BATCH_MAX_S`` (``now``: a monotonic
        clock, as when the first change was staged)."""
        return bool(self.order) and (
            queue_empty or len(self.order) >= BATCH_MAX or now - self.first_staged_at >= BATCH_MAX_S
        )

    def task(self, task_id: str) -> Task | None:
        raw = self.tasks.get(task_id)
        return Task.model_validate(raw) if raw else None

    def stage(self, task: Task, events: list[TaskEvent]) -> None:
        """Store the task with its events pending (after those of this batch not yet sent)."""
        if not self.order:
            self.first_staged_at = asyncio.get_running_loop().time()
        station = task.station_id
        pointer = pointer_key(task)
        if task.is_open and self.station_open.get(pointer) != task.task_id:
            self.station_open[pointer] = task.task_id
        before = self.staged.get(task.task_id)
        pending = before[0].outbox if before is not None else ()
        payloads = tuple(encode(ev).decode() for ev in events)
        stored = task.model_copy(update={"outbox": pending + payloads})
        self.tasks[task.task_id] = stored.model_dump(mode="json")
        self.stored(stored)
        self.staged[task.task_id] = (stored, self.current_event())
        self.order.append((station, events, payloads))

    @property
    def staged_changes(self) -> int:
        return len(self.order)

    async def finish(self) -> None:
        """One flush for every staged change, then their events in staging order, one wait for
        the acks, then the tasks without their outboxes. On failure the outboxes stay stored and
        the sweeper asks for them again (the read-back sends only what is missing)."""
        if not self.order:
            return
        staged, order = self.staged, self.order
        self.staged, self.order = {}, []
        self.m.owner_batch.observe(len(order))
        await self.flush()
        await self.publish((station, p) for station, _, payloads in order for p in payloads)
        for task, event in staged.values():
            with self.writing_as(event):  # the task's own partition, not the last event's
                self.settle(task)
        for _, events, _ in order:
            for ev in events:
                self.m.task_events.labels(ev.type, str(ev.level)).inc()
                if ev.type == "reminded":
                    self.m.reminders.labels(str(ev.level)).inc()
                elif ev.type == "escalated":
                    self.m.escalations.labels(str(ev.level)).inc()
                log.info("task %s v%s %s -> grid %s", ev.task_id, ev.version, ev.type, ev.grid_id)

    def settle(self, task: Task) -> None:
        """The events are out: store the task without them; a closed task leaves the pointer."""
        settled = task.model_copy(update={"outbox": ()})
        self.tasks[task.task_id] = settled.model_dump(mode="json")
        self.stored(settled)
        pointer = pointer_key(task)
        if not task.is_open and self.station_open.get(pointer) == task.task_id:
            self.station_open.pop(pointer, None)

    async def publish(self, messages: Iterable[tuple[str, str]]) -> None:
        """Send (station, payload) pairs in order, keyed by station (each station's events keep
        their order), and wait for the broker's acks (acks=all)."""
        pending = [await self.events.send(key=st.encode(), value=p.encode()) for st, p in messages]
        self.release()
        for fut in pending:
            await fut

    async def send_pending(self, task_id: str) -> None:
        """Send the events a crash left unpublished (same bytes, same event ids), then clear them.
        Those already in the topic are skipped; if that cannot be read, all are re-sent."""
        if task_id in self.staged:
            return  # its outbox belongs to this batch, sent by ``finish``
        task = self.task(task_id)
        if task is None or not task.outbox:
            return
        payloads = list(task.outbox)
        if self.published is not None:
            try:
                done = await self.published(task.station_id.encode())
                payloads = [p for p in payloads if orjson.loads(p)["event_id"] not in done]
            except Exception as exc:  # a copy (same id, same bytes) is better than a loss
                log.warning("task %s: cannot read back task-events (%s); re-sending all", task_id, exc)
        log.warning(
            "task %s: v%s left in the outbox by a crash: %d of %d event(s) to send",
            task_id,
            task.version,
            len(payloads),
            len(task.outbox),
        )
        await self.publish((task.station_id, p) for p in payloads)
        self.settle(task)

    async def on_outbox(self, cmd: OutboxCommand) -> None:
        await self.send_pending(cmd.task_id)

    async def on_alarm(self, alarm: AlarmEvent, now: datetime) -> None:
        """An opened grid alarm (``parse`` skips the rest): dispatch a task, or join the open one."""
        open_id = self.station_open.get(alarm.station_id)
        if open_id:
            await self.send_pending(open_id)
        current = self.task(open_id) if open_id else None
        if current is not None and current.is_open:
            task, events = machine.join(current, alarm, now)
            if events:
                self.stage(task, events)
            return
        lineage = self.directory.lineage(alarm.station_id)
        if lineage is None:
            log.error("alarm %s for station %s outside the directory", alarm.event_id, alarm.station_id)
            return
        task_id = machine.task_id_for(alarm)
        existing = self.task(task_id)
        if existing is not None:  # a replayed alarm: the task exists already
            if existing.is_open and open_id != task_id:
                # a crash left the task without its pointer: restore it, send what is pending
                self.station_open[alarm.station_id] = task_id
                log.warning("task %s: pointer of station %s restored", task_id, alarm.station_id)
            await self.send_pending(task_id)
            return
        # the warning in force over the station, else the one its alarm's rules ran under
        warning: str = self.warnings.level(alarm.station_id, now)
        if warning == "none":
            warning = alarm.warning_level or "none"
        policy = self.policies.choose(alarm.severity, lineage.key_grid, warning)
        radius = self.co_notify_radius_km
        near = self.directory.neighbours(alarm.station_id, radius) if radius > 0 else ()
        up = self.upwind.grids(self.directory, alarm.station_id, alarm.wind)
        task, event = machine.dispatch(
            alarm, lineage, policy, now, co_notified=near, upwind=up, warning=warning
        )
        self.stage(task, [event])

    async def on_dispatch(self, cmd: DispatchCommand, now: datetime) -> None:
        """The region stage's decision: the station's level-3 grid (as for an alarm read from the
        alarms topic), or the region's task, dispatched by the first alarm that needs it."""
        if cmd.region is None:
            await self.on_alarm(cmd.alarm, now)
            return
        region, alarm = cmd.region, cmd.alarm
        key = cmd.station_id
        open_id = self.station_open.get(key)
        if open_id:
            await self.send_pending(open_id)
        current = self.task(open_id) if open_id else None
        if current is None or not current.is_open:
            task_id = machine.task_id_for(region.episode)
            existing = self.task(task_id)
            if existing is not None:  # a replay, or this episode's task closed already
                if existing.is_open and open_id != task_id:
                    self.station_open[key] = task_id
                await self.send_pending(task_id)
                current = existing
            else:
                chain = lineage_of_grid(self.directory, region.grid)  # as a supervision task's
                name = self.policies.regional.policy
                policy = self.policies.policies[name] if name else self.policies.choose("major", False)
                task, event = machine.dispatch(region.episode, chain, policy, now, level=region.level)
                self.stage(task, [event])
                current = task
        if alarm.alarm_id == region.episode.alarm_id:
            return
        if not current.is_open:  # the region's task of this episode was closed: nothing to join
            log.warning("alarm %s: the region task %s is closed; not joined", alarm.alarm_id, current.task_id)
            return
        task, events = machine.join(current, alarm, now)
        if events:
            self.stage(task, events)

    async def on_supervise(self, cmd: SuperviseCommand, now: datetime) -> None:
        """The scheduler asks for a grid's supervision task of a period: created once."""
        task_id = supervision_task_id(cmd.station_id, cmd.duty, cmd.period_start)
        if self.task(task_id) is not None:
            await self.send_pending(task_id)
            self.m.supervision.labels(cmd.duty, "exists").inc()
            return
        grid = self.directory.grids.get(cmd.station_id)
        duty = getattr(self.policies.supervision, cmd.duty, None)
        if grid is None or duty is None:  # the directory or the policy changed since it was sent
            self.m.supervision.labels(cmd.duty, "stale").inc()
            return
        name = duty.policy
        policy = self.policies.policies[name] if name else self.policies.choose(duty.severity, grid.key)
        task, event = machine.supervise(
            task_id,
            grid.id,
            cmd.duty,
            lineage_of_grid(self.directory, grid.id),
            grid.level,
            (cmd.period_start, cmd.period_end),
            policy,
            duty.severity,
            now,
        )
        self.m.supervision.labels(cmd.duty, "created").inc()
        self.stage(task, [event])

    async def on_deadline(self, cmd: DeadlineCommand, now: datetime) -> None:
        await self.send_pending(cmd.task_id)
        task = self.task(cmd.task_id)
        if task is None:
            self.m.deadline_commands.labels("unknown").inc()
            return
        new, events = machine.apply_deadline(task, cmd, now)
        if not events:
            self.m.deadline_commands.labels("stale").inc()
            return
        self.m.deadline_commands.labels("applied").inc()
        self.stage(new, events)

    async def on_feedback(self, cmd: FeedbackCommand, now: datetime) -> None:
        fb = cmd.feedback
        origin = Origin(topic=cmd.origin_topic, partition=cmd.origin_partition, offset=cmd.origin_offset)
        await self.send_pending(fb.task_id)
        task = self.task(fb.task_id)
        if task is None:
            await self.reject(cmd, origin, "unknown_task", f"no task {fb.task_id}", now)
            return
        worker = self.directory.workers.get(fb.worker_id)
        if worker is None:
            await self.reject(
                cmd,
                origin,
                "unknown_worker",
                f"worker {fb.worker_id} is not in the grid directory",
                now,
            )
            return
        level = self.directory.level_of_grid(worker.grid) or 0
        refusal = machine.authorise(task, fb.action, level, worker.grid)
        result: tuple[Task, list[TaskEvent]] | machine.Refusal = refusal or (task, [])
        if refusal is None:
            policy = self.policies.policies.get(task.policy) or self.policies.choose(
                task.severity, task.lineage.key_grid
            )
            result = machine.apply_feedback(task, fb, policy, now)
            if isinstance(result, machine.Refusal):
                refusal = result
        if refusal is not None:
            await self.reject(cmd, origin, refusal.code, refusal.reason, now)
            return
        assert not isinstance(result, machine.Refusal)
        new, events = result
        if events:
            self.m.feedback.labels(fb.action, "applied").inc()
            if fb.action == "submit":
                on_time = task.deadline_at is None or now <= task.deadline_at
                self.m.feedback_on_time.labels("true" if on_time else "false").inc()
                self.m.feedback_latency.observe((now - task.created_at).total_seconds())
            self.stage(new, events)
        else:
            self.m.feedback.labels(fb.action, "duplicate").inc()

    async def reject(
        self, cmd: FeedbackCommand, origin: Origin, code: str, reason: str, now: datetime
    ) -> None:
        """Refuse a piece of feedback the task cannot take (the task is unchanged)."""
        fb = cmd.feedback
        refused = rejection(reason=reason, code=code, at=now, origin=origin, feedback=fb)
        await self.rejected.send(key=fb.task_id.encode(), value=encode(refused))
        self.m.feedback.labels(fb.action, "rejected").inc()
        self.m.dlq.labels("feedback", code).inc()
        log.warning("feedback %s rejected: %s", fb.feedback_id, reason)


def pointer_key(task: Task) -> str:
    """The key of the task's entry in ``station-open-task``: an alarm task's station (one open
    task per station, which later alarms join); a supervision task is its own entry (a grid may
    owe several periods at once). The sweeper's index is rebuilt from these entries."""
    return task.station_id if task.kind == "alarm" else task.task_id
