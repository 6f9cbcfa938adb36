"""Feedback intake: validate worker feedback and re-key it to the partition that owns the task."""

from __future__ import annotations

import logging
from typing import Any

from airgrid.domain.intake import Rejection, parse_feedback
from airgrid.domain.tasks import station_of_task
from airgrid.models.codecs import encode, text_of
from airgrid.models.dlq import Origin
from airgrid.models.feedback import FeedbackRejected
from airgrid.models.tasks import FeedbackCommand
from airgrid.worker.app import AirgridApp, Runtime
from airgrid.worker.retry import Retrier

log = logging.getLogger(__name__)


def register(app: AirgridApp, rt: Runtime) -> None:
    source, rejected, commands = (
        rt.topics["feedback"],
        rt.topics["feedback_rejected"],
        rt.topics["task_commands"],
    )
    m = rt.metrics

    async def reject(
        event: Any, code: str, reason: str, fb_id: str | None = None, task_id: str | None = None
    ) -> None:
        msg = event.message
        out = FeedbackRejected(
            reason=reason,
            reason_code=code,
            feedback_id=fb_id,
            task_id=task_id,
            origin=Origin(topic=msg.topic, partition=msg.partition, offset=msg.offset),
            payload=text_of(event.value)[0],
            at=rt.clock(),
        )
        await rejected.send(key=event.key, value=encode(out))
        m.feedback.labels("unknown", "rejected").inc()
        m.dlq.labels("feedback", code).inc()
        log.warning("feedback %s/%s@%s rejected: %s", msg.topic, msg.partition, msg.offset, reason)

    async def handle(event: Any) -> None:
        result = parse_feedback(event.value, rt.settings.max_message_bytes)
        if isinstance(result, Rejection):
            await reject(event, result.code, result.reason)
            return
        station = station_of_task(result.task_id)
        if station is None or station not in rt.directory.stations:
            await reject(
                event,
                "unknown_task",
                f"no task {result.task_id}",
                result.feedback_id,
                result.task_id,
            )
            return
        msg = event.message
        cmd = FeedbackCommand(
            station_id=station,
            feedback=result,
            origin_topic=msg.topic,
            origin_partition=msg.partition,
            origin_offset=msg.offset,
            received_at=rt.clock(),
        )
        await commands.send(key=station.encode(), value=encode(cmd))

    retrier = Retrier(app, m, give_up_s=rt.settings.internal_retry_seconds)

    async def intake(stream: Any) -> None:
        async for event in stream.events():
            # invalid feedback is refused inside ``handle``; anything else that fails is retried,
            # never refused (worker/retry.py)
            await retrier.run("feedback", event, lambda: handle(event))  # noqa: B023

    app.agent(source, name="airgrid.feedback", concurrency=1)(intake)
