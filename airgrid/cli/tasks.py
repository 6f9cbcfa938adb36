"""``airgrid tasks list|show``: tasks and their history, from the SQL projection."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import UTC, datetime
from typing import Any, get_args

import click

from airgrid.cli.base import UNREACHABLE, OpsError, group
from airgrid.cli.common import parse_time, projection_engine, settings
from airgrid.config.settings import Settings
from airgrid.models.tasks import TaskKind, TaskState

STATES: tuple[str, ...] = get_args(TaskState)
# not states of the machine, but what an operator asks for (docs/tasks.md)
VIEWS = ("escalated", "overdue")
LIST_COLUMNS = (
    "task_id",
    "kind",
    "state",
    "level",
    "grid_id",
    "grid_l3",
    "station_id",
    "severity",
    "version",
)
KINDS: tuple[str, ...] = get_args(TaskKind)
TIME_COLUMNS = ("created_at", "updated_at", "deadline_at", "closed_at")


@group("tasks")
def tasks() -> None:
    """Tasks and their full history, read from the SQL projection (AIRGRID_DATABASE_URL)."""


@tasks.command("list")
@click.option("--grid", help="a grid id at any level: the tasks of that grid and the grids below it")
@click.option(
    "--state",
    type=click.Choice(STATES + VIEWS),
    help="only tasks in this state; escalated: now at level 2 or 1; overdue: open, feedback not "
    "submitted and the deadline passed",
)
@click.option("--since", help="created at or after (ISO date/time; local zone if none given)")
@click.option("--until", help="created before (ISO date/time)")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="at most N tasks")
@click.option("--kind", type=click.Choice(KINDS), help="alarm tasks, or one supervision duty")
@click.option(
    "--format", "fmt", type=click.Choice(("table", "csv", "json")), default="table", show_default=True
)
def list_(
    grid: str | None,
    state: str | None,
    since: str | None,
    until: str | None,
    limit: int | None,
    kind: str | None,
    fmt: str,
) -> int:
    """Tasks in creation order, filtered by grid, state and creation time."""
    from airgrid.domain.directory import Directory
    from airgrid.sinks.sql import list_tasks

    s = settings()
    start = parse_time(since, s, "--since") if since else None
    end = parse_time(until, s, "--until") if until else None
    if grid and grid not in Directory.load(s.grid_file).grids:
        raise OpsError(f"--grid: no grid {grid!r} in the grid directory {s.grid_file}")
    engine = projection_engine(s)
    rows = list_tasks(
        engine,
        grid=grid,
        state=state if state in STATES else None,
        escalated=state == "escalated",
        overdue_at=datetime.now(UTC) if state == "overdue" else None,
        since=start,
        until=end,
        limit=limit,
        kind=kind,
    )
    if fmt == "json":
        print(json.dumps(rows, default=_json_value, indent=1))
    elif fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=[*LIST_COLUMNS, *TIME_COLUMNS])
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in w.fieldnames})
        sys.stdout.write(buf.getvalue())
    else:
        width = max([28, *(len(r["task_id"]) for r in rows)])
        print(
            f"{'task':<{width}} {'kind':<15} {'state':<18} lvl {'grid':<10} {'created':<20} {'updated':<20} v"
        )
        for r in rows:
            print(
                f"{r['task_id']:<{width}} {r['kind']:<15} {r['state']:<18} {r['level']:>3} "
                f"{r['grid_id']:<10} {_local(r['created_at'], s):<20} {_local(r['updated_at'], s):<20} "
                f"{r['version']}"
            )
        print(f"{len(rows)} task(s)", file=sys.stderr)
    return 0


@tasks.command("show")
@click.argument("task_id")
@click.option("--format", "fmt", type=click.Choice(("table", "json")), default="table", show_default=True)
def show(task_id: str, fmt: str) -> int:
    """One task and every event of its history, with the feedback action behind each."""
    from airgrid.sinks.sql import get_task, task_history

    s = settings()
    engine = projection_engine(s)
    task = get_task(engine, task_id)
    history = task_history(engine, task_id)
    if task is None:
        raise OpsError(f"no task {task_id!r} in the projection", UNREACHABLE)
    if fmt == "json":
        print(json.dumps({"task": task, "events": history}, default=_json_value, indent=1))
        return 0
    print(
        f"{task['task_id']}  {'station' if task['kind'] == 'alarm' else task['kind'] + ' of grid'} "
        f"{task['station_id']}  {task['severity']}  state {task['state']}  "
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


def _json_value(value: Any) -> str:
    """Times as ISO 8601 with their offset (``2026-11-19T02:00:00+00:00``), as in the topics."""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _local(t: datetime | None, s: Settings) -> str:
    return t.astimezone(s.zone).strftime("%Y-%m-%d %H:%M:%S") if t else "-"
