"""``airgrid feedback send``: one grid worker's action on a task, to the feedback topic."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any, get_args

import click
from pydantic import ValidationError

from airgrid.cli.base import BAD_INPUT, UNREACHABLE, OpsError, group
from airgrid.cli.common import describe, run_async
from airgrid.config.settings import Settings
from airgrid.models.feedback import Feedback, FeedbackAction

ACTIONS: tuple[str, ...] = get_args(FeedbackAction)


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
@click.option(
    "--source",
    "sources",
    multiple=True,
    metavar="TYPE[#ID][@LAT,LON][+problem][+handled]",
    help="findings: a source visited (repeat the option per source), e.g. "
    "construction_dust#SRC-1+problem+handled or catering_fumes@43.79,87.61",
)
@click.option("--feedback-id", help="default: a new unique id (a repeat with the same id is a no-op)")
def send(**given: Any) -> int:
    """Send one Feedback message to the feedback topic, after checking the worker and the task
    against the grid directory (AIRGRID_GRID_FILE): the worker must exist, and its grid must be
    in the grid chain of the task's station or grid (a review action needs a level-2 or level-1
    grid). A patrol is reported with `--action submit --source-found yes --source ...` once the
    task was acknowledged or the worker is on site.
    The worker process applies it, or refuses it to feedback.rejected (see `airgrid watch`)."""
    msg = _feedback_of(given)

    async def go(s: Settings) -> int:
        _check(msg, s)
        await _send(s, msg)
        print(f"sent {msg.feedback_id}: {msg.action} on {msg.task_id} by {msg.worker_id}")
        return 0

    return run_async(go)


def _feedback_of(a: dict[str, Any]) -> Feedback:
    findings = None
    visits = [_source(text) for text in a["sources"]]
    if a["source_found"] or a["source_type"] or a["measures"] or a["sources_inspected"] or visits:
        findings = {
            "source_found": a["source_found"] == "yes" or (a["source_found"] is None and bool(visits)),
            "source_type": a["source_type"],
            "measures": a["measures"],
            "sources_inspected": a["sources_inspected"] or len(visits),
            "sources": visits,
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


SOURCE = re.compile(
    r"^(?P<type>[a-z_]+)(?:#(?P<id>[A-Za-z0-9_.:@-]+))?(?:@(?P<lat>-?[0-9.]+),(?P<lon>-?[0-9.]+))?"
    r"(?P<flags>(?:\+(?:problem|handled))*)$"
)


def _source(text: str) -> dict[str, Any]:
    """``--source construction_dust#SRC-1+problem+handled`` as a ``SourceVisit`` object."""
    m = SOURCE.match(text)
    if m is None:
        raise OpsError(f"--source {text!r}: expected TYPE[#ID][@LAT,LON][+problem][+handled]", BAD_INPUT)
    flags = m["flags"].split("+")[1:]
    out: dict[str, Any] = {
        "type": m["type"],
        "problem_found": "problem" in flags,
        "handled": "handled" in flags,
    }
    if m["id"]:
        out["id"] = m["id"]
    if m["lat"] is not None:
        out |= {"lat": float(m["lat"]), "lon": float(m["lon"])}
    return out


def _check(msg: Feedback, s: Settings) -> None:
    """Refuse here what the worker would refuse for the directory's sake (unknown task, unknown
    worker, wrong grid, not a reviewer): a person sees why at once instead of `sent`."""
    from airgrid.domain.directory import Directory, DirectoryError
    from airgrid.domain.supervision import lineage_of_grid
    from airgrid.domain.tasks import authorise_in, station_of_task
    from airgrid.models.tasks import Lineage

    try:
        directory = Directory.load(s.grid_file)
    except DirectoryError as exc:
        raise OpsError(str(exc), BAD_INPUT) from None
    station = station_of_task(msg.task_id)
    if station is None:
        raise OpsError(f"--task: {msg.task_id!r} is not a task id (T-<station>-<yyyymmddHHMM>)")
    lineage: Lineage | None
    if station in directory.grids:  # a grid's own task: a patrol, a review, a region's task
        lineage = lineage_of_grid(directory, station)
    elif station not in directory.stations:
        raise OpsError(
            f"--task: {msg.task_id} names station or grid {station}, which is not in the grid directory "
            f"{s.grid_file}"
        )
    else:
        lineage = directory.lineage(station)
    if lineage is None:
        raise OpsError(f"--task: station {station} lies in no level-3 grid of {s.grid_file}")
    worker = directory.workers.get(msg.worker_id)
    if worker is None:
        raise OpsError(f"--worker: no worker {msg.worker_id!r} in the grid directory {s.grid_file}")
    level = directory.level_of_grid(worker.grid) or 0
    refusal = authorise_in(lineage, msg.action, level, worker.grid)
    if refusal is not None:
        raise OpsError(f"--worker {msg.worker_id}: {refusal.reason} (the worker would refuse it)")


async def _send(s: Settings, msg: Feedback) -> None:
    from aiokafka import AIOKafkaProducer

    from airgrid.cli.broker import reach
    from airgrid.kafka.client import kafka_client_options

    await reach(s)
    producer = AIOKafkaProducer(
        acks="all", enable_idempotence=True, request_timeout_ms=15000, **kafka_client_options(s)
    )
    try:
        await producer.start()
        await producer.send_and_wait(
            s.topic("feedback"), msg.model_dump_json().encode(), key=msg.task_id.encode()
        )
    except Exception as exc:
        raise OpsError(f"cannot send to Kafka at {s.broker}: {describe(exc)}", UNREACHABLE) from None
    finally:
        await producer.stop()
