"""The SQL projection as a sink: airgrid's output topics decoded into one batched, idempotent
SQL write (``SqlProjection``), driven by the sink runner (sinks/base.py)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import orjson

from airgrid.kafka.topics import TopicNames
from airgrid.models.alarms import AlarmEvent
from airgrid.models.dlq import DeadLetter
from airgrid.models.feedback import Feedback, FeedbackRejected
from airgrid.models.tasks import TaskEvent
from airgrid.sinks.base import Record, Written
from airgrid.sinks.sql.writer import Batch, Letter, LetterTopic, SqlProjection

log = logging.getLogger(__name__)


class ProjectionSink:
    """Alarms, task events, feedback and every dead letter, into the projection database."""

    name = "projection"

    def __init__(self, projection: SqlProjection, names: TopicNames) -> None:
        self.projection = projection
        self.names = names
        n = names
        self.letter_topics: dict[str, LetterTopic] = {
            n.readings_dlq: "readings.dlq",
            n.alarms_dlq: "alarms.dlq",
            n.commands_dlq: "commands.dlq",
            n.feedback_rejected: "feedback.rejected",
        }

    def topics(self) -> tuple[str, ...]:
        n = self.names
        return (n.task_events, n.alarms, n.feedback, *self.letter_topics)

    def setup(self) -> None:
        self.projection.setup()

    def write(self, records: Sequence[Record]) -> Written:
        batch, unreadable = self.decode(records)
        rows = self.projection.write_batch(batch)
        kinds = {
            "alarm": len(batch.alarms),
            "task_event": len(batch.task_events),
            "feedback": len(batch.feedback),
            "dead_letter": len(batch.letters),
        }
        return Written(rows=rows, kinds=kinds, unreadable=unreadable)

    def decode(self, records: Sequence[Record]) -> tuple[Batch, int]:
        """Sort records by topic into validated messages; unreadable ones are skipped loudly, and
        counted unless on ``feedback`` (which carries foreign messages that feedback.rejected
        already counts)."""
        n = self.names
        batch = Batch()
        unreadable = 0
        for msg in records:
            try:
                data = orjson.loads(msg.value or b"")
                if msg.topic == n.alarms:
                    batch.alarms.append(AlarmEvent.model_validate(data))
                elif msg.topic == n.task_events:
                    batch.task_events.append(TaskEvent.model_validate(data))
                elif msg.topic == n.feedback:
                    batch.feedback.append(Feedback.model_validate(data))
                else:
                    kind = self.letter_topics[msg.topic]
                    fallback = f"{msg.topic}:{msg.partition}:{msg.offset}"
                    message = (
                        FeedbackRejected.model_validate(data)
                        if kind == "feedback.rejected"
                        else DeadLetter.model_validate(data)
                    )
                    batch.letters.append(Letter(kind, message, fallback))
            except Exception as exc:
                unreadable += msg.topic != n.feedback
                log.warning("projection skips unreadable %s@%s: %s", msg.topic, msg.offset, exc)
        return batch, unreadable
