"""``airgrid report weekly|monthly|quarterly|assessment``: reports from the SQL projection."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from airgrid.cli.base import BAD_INPUT, UNREACHABLE, OpsError, command
from airgrid.cli.common import first_line, projection_engine, settings
from airgrid.reports.periods import EXAMPLES, KINDS, PeriodError, parse_period

EPILOG = """\b
periods: weekly 2026-W47 (ISO week), monthly 2026-11, quarterly 2026-Q4, assessment 2026;
days are local days in settings.timezone (AIRGRID_TIMEZONE).
exit codes: 0 ok, 2 bad input (period, grid, format), 1 projection database unreachable.
"""


@command("report", epilog=EPILOG)
@click.argument("kind", type=click.Choice(list(KINDS)))
@click.option("--period", required=True, help="e.g. " + ", ".join(EXAMPLES.values()))
@click.option("--grid", help="a grid id: only the grids under it (default: every grid with activity)")
@click.option(
    "--format", "fmt", type=click.Choice(("table", "csv", "md", "html")), default="table", show_default=True
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="write to this file instead of stdout"
)
def report(kind: str, period: str, grid: str | None, fmt: str, out: Path | None) -> int:
    """Reports in the grid system's cadence, from the SQL projection: weekly per level-3 grid
    (tasks, patrols, feedback on time), monthly per level-2 grid (dispatch summary), quarterly per
    level-1 grid (bulletin), and the yearly grid assessment score. KIND is one of weekly, monthly,
    quarterly, assessment."""
    from airgrid.domain.directory import Directory, DirectoryError
    from airgrid.reports.build import LEVEL, GridError, build, grids_in_scope
    from airgrid.reports.render import render

    s = settings()
    try:
        span = parse_period(kind, period, s.zone)
    except PeriodError as exc:
        raise OpsError(str(exc), BAD_INPUT) from None
    try:
        directory = Directory.load(s.grid_file)
    except DirectoryError as exc:
        raise OpsError(str(exc), BAD_INPUT) from None
    try:
        grids_in_scope(directory, LEVEL[kind], grid)
    except GridError as exc:
        raise OpsError(f"{exc} ({s.grid_file})", BAD_INPUT) from None
    engine = projection_engine(s)
    try:
        made = build(kind, span, directory, engine, grid, now=datetime.now(UTC))
    except Exception as exc:
        raise OpsError(f"cannot read the projection: {first_line(exc)}", UNREACHABLE) from None
    text = render(made, fmt)
    if out:
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise OpsError(f"--out {out}: {exc.strerror}", BAD_INPUT) from None
        print(f"wrote {out} ({len(made.rows)} grid(s))", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
