"""``airgrid tasks list|show`` from the projection, and ``airgrid feedback send`` to the topic."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from airgrid.models.feedback import Feedback
from airgrid.models.tasks import TaskState
from airgrid.ops.common import BAD_INPUT, UNREACHABLE, OpsError, fail, parse_time, projection_engine, settings

STATES: tuple[TaskState, ...] = ("dispatched", "acknowledged", "on_site", "feedback_submitted", "closed")
ACTIONS = ("acknowledge", "on_site", "submit", "approve", "reject", "close")
LIST_COLUMNS = ("task_id", "state", "level", "grid_id", "grid_l3", "station_id", "severity", "version")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="airgrid tasks",
        description="Tasks and their full history, read from the SQL projection (AIRGRID_DATABASE_URL).",
    )
    sub = p.add_subparsers(dest="cmd", required=True, metavar="list|show")
    ls = sub.add_parser("list", help="tasks, filtered by grid, state and creation time")
    ls.add_argument("--grid", help="a grid id at any level: the tasks of that grid and the grids below it")
    ls.add_argument("--state", choices=STATES, help="only tasks in this state")
    ls.add_argument("--since", help="created at or after (ISO date/time; local zone if none given)")
    ls.add_argument("--until", help="created before (ISO date/time)")
    ls.add_argument("--limit", type=int, default=None, help="at most N tasks")
    ls.add_argument("--format", choices=("table", "csv", "json"), default="table")
    show = sub.add_parser("show", help="one task and every event of its history")
    show.add_argument("task_id")
    show.add_argument("--format", choices=("table", "json"), default="table")
    return p


def cmd_tasks(argv: list[str]) -> int:
    a = _parser().parse_args(argv)
    try:
        s = settings()
        if a.cmd == "list":
            return _list(a, s)
        return _show(a, s)
    except OpsError as exc:
        return fail(exc)


def _list(a: argparse.Namespace, s: Any) -> int:
    from airgrid.domain.directory import Directory
    from airgrid.sinks.sql import list_tasks

    since = parse_time(a.since, s, "--since") if a.since else None
    until = parse_time(a.until, s, "--until") if a.until else None
    if a.grid and a.grid not in Directory.load(s.grid_file).grids:
        raise OpsError(f"--grid: no grid {a.grid!r} in the grid directory {s.grid_file}")
    engine = projection_engine(s)
    rows = list_tasks(engine, grid=a.grid, state=a.state, since=since, until=until, limit=a.limit)
    if a.format == "json":
        print(json.dumps(rows, default=str, indent=1))
    elif a.format == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(
            buf, fieldnames=[*LIST_COLUMNS, "created_at", "updated_at", "deadline_at", "closed_at"]
        )
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in w.fieldnames})
        sys.stdout.write(buf.getvalue())
    else:
        print(f"{'task':<28} {'state':<18} lvl {'grid':<10} {'created':<20} {'updated':<20} v")
        for r in rows:
            print(
                f"{r['task_id']:<28} {r['state']:<18} {r['level']:>3} {r['grid_id']:<10} "
                f"{_local(r['created_at'], s):<20} {_local(r['updated_at'], s):<20} {r['version']}"
            )
        print(f"{len(rows)} task(s)", file=sys.stderr)
    return 0


def _show(a: argparse.Namespace, s: Any) -> int:
    from airgrid.sinks.sql import get_task, task_history

    engine = projection_engine(s)
    task = get_task(engine, a.task_id)
    history = task_history(engine, a.task_id)
    if task is None:
        raise OpsError(f"no task {a.task_id!r} in the projection", UNREACHABLE)
    if a.format == "json":
        print(json.dumps({"task": task, "events": history}, default=str, indent=1))
        return 0
    print(
        f"{task['task_id']}  station {task['station_id']}  {task['severity']}  state {task['state']}  "
        f"level {task['level']} ({task['grid_id']})  chain {task['grid_l3']} > {task['grid_l2']} > "
        f"{task['grid_l1']}{'  key grid' if task['key_grid'] else ''}"
    )
    print(f"created {_local(task['created_at'], s)}  deadline {_local(task['deadline_at'], s)}")
    for e in history:
        who = f"{e['worker_id']} ({e['feedback_action']})" if e["worker_id"] else ""
        print(
            f"  v{e['version']:<3} {_local(e['at'], s):<20} {e['type']:<21} {e['state']:<18} "
            f"L{e['level']} {e['grid_id']:<10} {who} {e['note'] or ''}".rstrip()
        )
    return 0


def _local(t: datetime | None, s: Any) -> str:
    return t.astimezone(s.zone).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def cmd_feedback(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="airgrid feedback",
        description="Send one grid worker's (or reviewer's) action on a task to the feedback topic.",
    )
    sub = p.add_subparsers(dest="cmd", required=True, metavar="send")
    send = sub.add_parser("send", help="produce one Feedback message")
    send.add_argument("--task", required=True, help="task id, e.g. T-ST001-202611160200")
    send.add_argument("--worker", required=True, help="worker id from the grid directory")
    send.add_argument("--action", required=True, choices=ACTIONS)
    send.add_argument("--comment", default="")
    send.add_argument("--source-found", choices=("yes", "no"), help="findings: was a source found")
    send.add_argument("--source-type", help="findings: construction_dust, coal_burning, ...")
    send.add_argument("--measures", default="", help="findings: what was done")
    send.add_argument("--sources-inspected", type=int, default=0)
    send.add_argument("--feedback-id", help="default: a new unique id (a repeat with the same id is a no-op)")
    a = p.parse_args(argv)
    try:
        s = settings()
        msg = _feedback_of(a)
    except OpsError as exc:
        return fail(exc)
    return _send(s, msg)


def _feedback_of(a: argparse.Namespace) -> Feedback:
    findings = None
    if a.source_found or a.source_type or a.measures or a.sources_inspected:
        findings = {
            "source_found": a.source_found == "yes",
            "source_type": a.source_type,
            "measures": a.measures,
            "sources_inspected": a.sources_inspected,
        }
    try:
        return Feedback.model_validate(
            {
                "feedback_id": a.feedback_id or f"cli-{uuid.uuid4().hex[:16]}",
                "task_id": a.task,
                "worker_id": a.worker,
                "action": a.action,
                "at": datetime.now(UTC),
                "findings": findings,
                "comment": a.comment,
            }
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise OpsError(f"invalid feedback: {where}: {err['msg']}", BAD_INPUT) from None


def _send(s: Any, msg: Feedback) -> int:
    from aiokafka import AIOKafkaProducer

    from airgrid.kafka.client import kafka_client_options

    async def go() -> None:
        producer = AIOKafkaProducer(acks="all", request_timeout_ms=15000, **kafka_client_options(s))
        await asyncio.wait_for(producer.start(), 20)
        try:
            await producer.send_and_wait(
                s.topic("feedback"), msg.model_dump_json().encode(), key=msg.task_id.encode()
            )
        finally:
            await producer.stop()

    try:
        asyncio.run(go())
    except Exception as exc:
        return fail(OpsError(f"cannot send to Kafka at {s.broker}: {type(exc).__name__}: {exc}", UNREACHABLE))
    print(f"sent {msg.feedback_id}: {msg.action} on {msg.task_id} by {msg.worker_id}")
    return 0
