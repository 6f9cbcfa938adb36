"""The task owner: one writer per station partition. Turns alarms into tasks (dispatch) and
applies feedback and deadline commands (re-keyed to this partition) to the task state machine."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from airgrid.domain import tasks as machine
from airgrid.models.alarms import AlarmEvent
from airgrid.models.dlq import Origin
from airgrid.models.feedback import FeedbackRejected
from airgrid.models.tasks import DeadlineCommand, FeedbackCommand, Task, TaskEvent
from airgrid.streams.app import AirgridApp, Runtime
from airgrid.streams.codecs import encode, text_of

log = logging.getLogger(__name__)


class Owner:
    """Applies one incoming event to the owner's tables, emitting task events first."""

    def __init__(self, rt: Runtime, tasks: Any, station_open: Any) -> None:
        self.rt = rt
        self.tasks = tasks
        self.station_open = station_open
        self.m = rt.metrics
        self.events_topic = rt.topics["task_events"]
        self.rejected_topic = rt.topics["feedback_rejected"]

    def task(self, task_id: str) -> Task | None:
        raw = self.tasks.get(task_id)
        return Task.model_validate(raw) if raw else None

    async def commit(self, task: Task, events: list[TaskEvent]) -> None:
        """Send events, then store the task: a crash in between re-sends (same event ids)."""
        key = task.station_id.encode()
        for ev in events:
            await self.events_topic.send(key=key, value=encode(ev))
            self.m.task_events.labels(ev.type, str(ev.level)).inc()
            if ev.type == "reminded":
                self.m.reminders.labels(str(ev.level)).inc()
            elif ev.type == "escalated":
                self.m.escalations.labels(str(ev.level)).inc()
            log.info("task %s v%s %s -> grid %s", ev.task_id, ev.version, ev.type, ev.grid_id)
        self.tasks[task.task_id] = task.model_dump(mode="json")
        station = task.station_id
        if task.is_open:
            self.station_open[station] = task.task_id
        elif self.station_open.get(station) == task.task_id:
            self.station_open.pop(station, None)

    async def on_alarm(self, alarm: AlarmEvent, now: datetime) -> None:
        if alarm.route != "grid" or alarm.kind != "opened":
            return
        open_id = self.station_open.get(alarm.station_id)
        current = self.task(open_id) if open_id else None
        if current is not None and current.is_open:
            task, events = machine.join(current, alarm, now)
            if events:
                await self.commit(task, events)
            return
        lineage = self.rt.directory.lineage(alarm.station_id)
        if lineage is None:
            log.error("alarm %s for station %s outside the directory", alarm.event_id, alarm.station_id)
            return
        task_id = machine.task_id_for(alarm)
        if self.task(task_id) is not None:  # a replayed alarm: the task exists already
            return
        policy = self.rt.policies.choose(alarm.severity, lineage.key_grid)
        task, event = machine.dispatch(alarm, lineage, policy, now)
        await self.commit(task, [event])

    async def on_deadline(self, cmd: DeadlineCommand, now: datetime) -> None:
        task = self.task(cmd.task_id)
        if task is None:
            self.m.deadline_commands.labels("unknown").inc()
            return
        new, events = machine.apply_deadline(task, cmd, now)
        if not events:
            self.m.deadline_commands.labels("stale").inc()
            return
        self.m.deadline_commands.labels("applied").inc()
        await self.commit(new, events)

    async def on_feedback(self, cmd: FeedbackCommand, now: datetime) -> None:
        fb = cmd.feedback
        origin = Origin(topic=cmd.origin_topic, partition=cmd.origin_partition, offset=cmd.origin_offset)
        task = self.task(fb.task_id)
        if task is None:
            await self.reject(cmd, origin, "unknown_task", f"no task {fb.task_id}", now)
            return
        worker = self.rt.directory.workers.get(fb.worker_id)
        if worker is None:
            await self.reject(
                cmd,
                origin,
                "unknown_worker",
                f"worker {fb.worker_id} is not in the grid directory",
                now,
            )
            return
        level = self.rt.directory.level_of_grid(worker.grid) or 0
        refusal = machine.authorise(task, fb.action, level, worker.grid)
        result: tuple[Task, list[TaskEvent]] | machine.Refusal = refusal or (task, [])
        if refusal is None:
            policy = self.rt.policies.policies.get(task.policy) or self.rt.policies.choose(
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
            await self.commit(new, events)
        else:
            self.m.feedback.labels(fb.action, "duplicate").inc()

    async def reject(
        self,
        cmd: FeedbackCommand | None,
        origin: Origin | None,
        code: str,
        reason: str,
        now: datetime,
        payload: bytes | None = None,
    ) -> None:
        fb = cmd.feedback if cmd else None
        text = text_of(payload)[0] if payload is not None else (fb.model_dump_json() if fb else "")
        rejected = FeedbackRejected(
            reason=reason,
            reason_code=code,
            feedback_id=fb.feedback_id if fb else None,
            task_id=fb.task_id if fb else None,
            origin=origin,
            payload=text,
            at=now,
        )
        key = fb.task_id.encode() if fb else None
        await self.rejected_topic.send(key=key, value=encode(rejected))
        self.m.feedback.labels(fb.action if fb else "unknown", "rejected").inc()
        self.m.dlq.labels("feedback", code).inc()
        log.warning("feedback %s rejected: %s", fb.feedback_id if fb else "?", reason)


def register(app: AirgridApp, rt: Runtime) -> None:
    parts = rt.settings.topic_partitions
    tasks = app.Table("tasks", default=None, partitions=parts, key_type=str)
    station_open = app.Table("station-open-task", default=None, partitions=parts, key_type=str)
    rt.tables["tasks"] = tasks
    rt.tables["station_open"] = station_open
    owner = Owner(rt, tasks, station_open)
    alarms_name, commands_name = rt.names.alarms, rt.names.task_commands
    channel = app.topic(alarms_name, commands_name, key_serializer="raw", value_serializer="raw")

    async def handle(event: Any) -> None:
        now = rt.clock()
        topic = event.message.topic
        data = orjson.loads(event.value)
        if topic == alarms_name:
            await owner.on_alarm(AlarmEvent.model_validate(data), now)
        elif data.get("kind") == "deadline":
            await owner.on_deadline(DeadlineCommand.model_validate(data), now)
        else:
            await owner.on_feedback(FeedbackCommand.model_validate(data), now)

    async def own(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            try:
                await handle(event)
            except (ValidationError, orjson.JSONDecodeError) as exc:
                # only airgrid writes these topics; a bad message is a bug or a foreign writer
                log.error("unreadable message on %s/%s@%s: %s", msg.topic, msg.partition, msg.offset, exc)
                await owner.reject(
                    None,
                    Origin(topic=msg.topic, partition=msg.partition, offset=msg.offset),
                    "unreadable",
                    f"unreadable message on {msg.topic}: {exc}",
                    rt.clock(),
                    payload=event.value,
                )
            except Exception as exc:
                log.exception("owner failed on %s/%s@%s", msg.topic, msg.partition, msg.offset)
                await owner.reject(
                    None,
                    Origin(topic=msg.topic, partition=msg.partition, offset=msg.offset),
                    "internal",
                    f"internal error: {type(exc).__name__}: {exc}",
                    rt.clock(),
                    payload=event.value,
                )

    app.agent(channel, name="airgrid.owner", concurrency=1)(own)
