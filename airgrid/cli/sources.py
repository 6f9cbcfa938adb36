"""``airgrid sources list|show``: the pollution-source register, from the SQL projection."""

from __future__ import annotations

import csv
import io
import json
import sys
from typing import get_args

import click

from airgrid.cli.base import UNREACHABLE, OpsError, group
from airgrid.cli.common import projection_engine, settings
from airgrid.cli.tasks import _json_value, _local
from airgrid.models.feedback import SourceType

COLUMNS = (
    "source_id",
    "grid_id",
    "type",
    "name",
    "lon",
    "lat",
    "inspections",
    "problems",
    "handled",
    "repeat_offences",
    "first_inspected",
    "last_inspected",
)


@group("sources")
def sources() -> None:
    """The pollution-source register: every source a patrol or an alarm task inspected (the
    sources listed in submitted findings), read from the SQL projection (AIRGRID_DATABASE_URL)."""


@sources.command("list")
@click.option(
    "--grid", help="sources of this grid (a level-2 or level-1 grid: of the level-3 grids under it)"
)
@click.option("--type", "type_", type=click.Choice(get_args(SourceType)), help="sources of this type")
@click.option("--problems", is_flag=True, help="only sources where a problem was ever found")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="at most N sources")
@click.option(
    "--format", "fmt", type=click.Choice(("table", "csv", "json")), default="table", show_default=True
)
def list_(grid: str | None, type_: str | None, problems: bool, limit: int | None, fmt: str) -> int:
    """Sources, most repeat offences first."""
    from airgrid.domain.directory import Directory
    from airgrid.reports.build import GridError, grids_in_scope
    from airgrid.sinks.sql import list_sources

    s = settings()
    grids = None
    if grid:
        try:
            grids = grids_in_scope(Directory.load(s.grid_file), 3, grid)
        except GridError as exc:
            raise OpsError(str(exc)) from None
    rows = list_sources(projection_engine(s), grids=grids, type_=type_, problems=problems, limit=limit)
    if fmt == "json":
        print(json.dumps(rows, default=_json_value, indent=1))
    elif fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        sys.stdout.write(buf.getvalue())
    else:
        print(f"{'source':<32} {'grid':<12} {'type':<18} insp probl hand rep  {'last inspected':<19}")
        for r in rows:
            print(
                f"{r['source_id']:<32} {r['grid_id']:<12} {r['type']:<18} {r['inspections']:>4} "
                f"{r['problems']:>5} {r['handled']:>4} {r['repeat_offences']:>3}  "
                f"{_local(r['last_inspected'], s)}"
            )
        print(f"{len(rows)} source(s)", file=sys.stderr)
    return 0


@sources.command("show")
@click.argument("source_id")
@click.option("--format", "fmt", type=click.Choice(("table", "json")), default="table", show_default=True)
def show(source_id: str, fmt: str) -> int:
    """One source and every inspection of it (task, worker, problem found, handled)."""
    from airgrid.sinks.sql import source_history

    s = settings()
    row, seen = source_history(projection_engine(s), source_id)
    if row is None:
        raise OpsError(f"no source {source_id!r} in the register", UNREACHABLE)
    if fmt == "json":
        print(json.dumps({"source": row, "inspections": seen}, default=_json_value, indent=1))
        return 0
    where = f"lat {row['lat']}, lon {row['lon']}" if row["lon"] is not None else "location unknown"
    print(f"{row['source_id']}  {row['type']}  {row['name'] or '-'}  grid {row['grid_id']}  {where}")
    print(
        f"inspections {row['inspections']}, problems {row['problems']}, handled {row['handled']}, "
        f"repeat offences {row['repeat_offences']}"
    )
    for r in seen:
        found = (
            "problem" + (", handled" if r["handled"] else ", not handled")
            if r["problem_found"]
            else "no problem"
        )
        print(
            f"  {_local(r['at'], s)}  {r['task_kind']:<8} {r['task_id']:<32} "
            f"{r['worker_id'] or '-':<16} {found}"
        )
    return 0
