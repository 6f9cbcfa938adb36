"""``airgrid report weekly|monthly|quarterly|assessment``: reports from the SQL projection."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from airgrid.ops.common import BAD_INPUT, UNREACHABLE, OpsError, fail, first_line, projection_engine, settings
from airgrid.reports.periods import EXAMPLES, KINDS, PeriodError, parse_period

EPILOG = """\
periods: weekly 2026-W47 (ISO week), monthly 2026-11, quarterly 2026-Q4, assessment 2026;
days are local days in settings.timezone (AIRGRID_TIMEZONE).
exit codes: 0 ok, 2 bad input (period, grid, format), 1 projection database unreachable.
"""


def cmd_report(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="airgrid report",
        description="Reports in the grid system's cadence, from the SQL projection: weekly per level-3 "
        "grid (tasks, patrols, feedback on time), monthly per level-2 grid (dispatch summary), "
        "quarterly per level-1 grid (bulletin), and the yearly grid assessment score.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("kind", choices=list(KINDS), help="which report")
    p.add_argument("--period", required=True, help="e.g. " + ", ".join(EXAMPLES.values()))
    p.add_argument("--grid", help="a grid id: only the grids under it (default: every grid with activity)")
    p.add_argument("--format", choices=("table", "csv", "md", "html"), default="table")
    p.add_argument("--out", type=Path, help="write to this file instead of stdout")
    a = p.parse_args(argv)
    try:
        return _report(a)
    except OpsError as exc:
        return fail(exc)


def _report(a: argparse.Namespace) -> int:
    from airgrid.domain.directory import Directory, DirectoryError
    from airgrid.reports.build import GridError, build, grids_in_scope
    from airgrid.reports.render import render

    s = settings()
    try:
        period = parse_period(a.kind, a.period, s.zone)
    except PeriodError as exc:
        raise OpsError(str(exc), BAD_INPUT) from None
    try:
        directory = Directory.load(s.grid_file)
    except DirectoryError as exc:
        raise OpsError(str(exc), BAD_INPUT) from None
    try:
        grids_in_scope(
            directory, {"weekly": 3, "monthly": 2, "quarterly": 1, "assessment": 3}[a.kind], a.grid
        )
    except GridError as exc:
        raise OpsError(f"{exc} ({s.grid_file})", BAD_INPUT) from None
    engine = projection_engine(s)
    try:
        report = build(a.kind, period, directory, engine, a.grid, now=datetime.now(UTC))
    except Exception as exc:
        raise OpsError(f"cannot read the projection: {first_line(exc)}", UNREACHABLE) from None
    text = render(report, a.format)
    if a.out:
        try:
            a.out.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise OpsError(f"--out {a.out}: {exc.strerror}", BAD_INPUT) from None
        print(f"wrote {a.out} ({len(report.rows)} grid(s))", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
