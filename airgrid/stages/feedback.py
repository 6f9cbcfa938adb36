"""Feedback intake: validate worker feedback and re-key it to the partition that owns the task.

Feedback may arrive under any key; the task id names its station (``T-<station>-<opened>``), so
the intake sends it on to ``task-commands`` keyed by that station, where the task owner applies it.
Feedback that is itself invalid (not JSON, not the schema, a task that cannot exist) goes to
``feedback.rejected`` with the reason and origin; any other failure raises, for the driver to retry.
"""

from __future__ import annotations

import logging

from airgrid.domain.directory import Directory
from airgrid.domain.intake import Rejection, parse_feedback
from airgrid.domain.tasks import station_of_task
from airgrid.metrics import Metrics
from airgrid.models.codecs import encode, letter_key, rejection
from airgrid.models.feedback import Feedback
from airgrid.models.tasks import FeedbackCommand
from airgrid.stages.ports import Clock, Delivery, Outlet

log = logging.getLogger(__name__)


class FeedbackIntake:
    """Handles one message of the ``feedback`` topic."""

    def __init__(
        self,
        *,
        rejected: Outlet,
        commands: Outlet,
        directory: Directory,
        metrics: Metrics,
        clock: Clock,
        max_bytes: int,
    ) -> None:
        self.rejected = rejected
        self.commands = commands
        self.directory = directory
        self.m = metrics
        self.clock = clock
        self.max_bytes = max_bytes

    async def handle(self, msg: Delivery) -> None:
        result = parse_feedback(msg.value, self.max_bytes)
        if isinstance(result, Rejection):
            await self.reject(msg, result.code, result.reason)
            return
        # the task's owner key: a station (an alarm's task), or a grid (a region's task during a
        # regional episode, a supervision task)
        station = station_of_task(result.task_id)
        d = self.directory
        if station is None or (station not in d.stations and station not in d.grids):
            await self.reject(msg, "unknown_task", f"no task {result.task_id}", result)
            return
        cmd = FeedbackCommand(
            station_id=station,
            feedback=result,
            origin_topic=msg.topic,
            origin_partition=msg.partition,
            origin_offset=msg.offset,
            received_at=self.clock(),
        )
        await self.commands.send(key=station.encode(), value=encode(cmd))

    async def reject(self, msg: Delivery, code: str, reason: str, feedback: Feedback | None = None) -> None:
        refused = rejection(
            reason=reason, code=code, at=self.clock(), origin=msg.origin, payload=msg.value, feedback=feedback
        )
        await self.rejected.send(key=letter_key(msg.key), value=encode(refused))
        self.m.feedback.labels("unknown", "rejected").inc()
        self.m.dlq.labels("feedback", code).inc()
        log.warning("feedback %s rejected: %s", msg, reason)
