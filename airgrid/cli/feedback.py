"""``airgrid feedback send``: one grid worker's action on a task, to the feedback topic."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import click
from pydantic import ValidationError

from airgrid.cli.base import BAD_INPUT, UNREACHABLE, OpsError, group
from airgrid.cli.common import describe, run_async
from airgrid.config.settings import Settings
from airgrid.models.feedback import Feedback

ACTIONS = ("acknowledge", "on_site", "submit", "approve", "reject", "close")


@group("feedback")
def feedback() -> None:
    """Act on a task as a grid worker (or reviewer) would."""


@feedback.command("send")
@click.option("--task", required=True, help="task id, e.g. T-ST001-202611160200")
@click.option("--worker", required=True, help="worker id from the grid directory")
@click.option("--action", required=True, type=click.Choice(ACTIONS))
@click.option("--comment", default="")
@click.option("--source-found", type=click.Choice(("yes", "no")), help="findings: was a source found")
@click.option("--source-type", help="findings: construction_dust, coal_burning, ...")
@click.option("--measures", default="", help="findings: what was done")
@click.option("--sources-inspected", type=int, default=0, show_default=True)
@click.option("--feedback-id", help="default: a new unique id (a repeat with the same id is a no-op)")
def send(**given: Any) -> int:
    """Send one Feedback message to the feedback topic. The worker process applies it, or refuses
    it to feedback.rejected (see `airgrid watch`)."""
    msg = _feedback_of(given)

    async def go(s: Settings) -> int:
        await _send(s, msg)
        print(f"sent {msg.feedback_id}: {msg.action} on {msg.task_id} by {msg.worker_id}")
        return 0

    return run_async(go)


def _feedback_of(a: dict[str, Any]) -> Feedback:
    findings = None
    if a["source_found"] or a["source_type"] or a["measures"] or a["sources_inspected"]:
        findings = {
            "source_found": a["source_found"] == "yes",
            "source_type": a["source_type"],
            "measures": a["measures"],
            "sources_inspected": a["sources_inspected"],
        }
    try:
        return Feedback.model_validate(
            {
                "feedback_id": a["feedback_id"] or f"cli-{uuid.uuid4().hex[:16]}",
                "task_id": a["task"],
                "worker_id": a["worker"],
                "action": a["action"],
                "at": datetime.now(UTC),
                "findings": findings,
                "comment": a["comment"],
            }
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise OpsError(f"invalid feedback: {where}: {err['msg']}", BAD_INPUT) from None


async def _send(s: Settings, msg: Feedback) -> None:
    from aiokafka import AIOKafkaProducer

    from airgrid.cli.broker import reach
    from airgrid.kafka.topics import kafka_client_options

    await reach(s)
    producer = AIOKafkaProducer(acks="all", request_timeout_ms=15000, **kafka_client_options(s))
    try:
        await producer.start()
        await producer.send_and_wait(
            s.topic("feedback"), msg.model_dump_json().encode(), key=msg.task_id.encode()
        )
    except Exception as exc:
        raise OpsError(f"cannot send to Kafka at {s.broker}: {describe(exc)}", UNREACHABLE) from None
    finally:
        await producer.stop()
