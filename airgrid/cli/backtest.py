"""``airgrid backtest``: the alarm rules over historical hourly readings, without Kafka."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast, get_args

import click

from airgrid.cli.base import OpsError, command
from airgrid.config.settings import DATA_DIR
from airgrid.domain.aqi import Standard
from airgrid.models.warnings import WarningLevel

if TYPE_CHECKING:
    from airgrid.domain.backtest import Row
    from airgrid.domain.backtest_tasks import ClosingModel, TaskReplay
    from airgrid.domain.detection.compiled import RuleSet
    from airgrid.domain.regional import RegionalDispatch
    from airgrid.domain.rules import Regional


@command(
    "backtest",
    epilog="The CSV hour label H is read as the START of the hour (H:00-H+1:00, UTC+08:00) unless "
    "--hour-label end; CO in the files is µg/m³ and is converted to mg/m³.",
)
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="FILE...")
@click.option(
    "--rules",
    type=click.Path(path_type=Path),
    default=DATA_DIR / "rules.toml",
    help="rules file (default: shipped)",
)
@click.option(
    "--standard",
    type=click.Choice(["auto", *(s.value for s in Standard)]),
    default="auto",
    show_default=True,
    help="AQI standard; auto: HJ 633 version by each reading's date",
)
@click.option(
    "--warning-level",
    type=click.Choice(get_args(WarningLevel)),
    default="none",
    show_default=True,
)
@click.option(
    "--hour-label",
    type=click.Choice(["start", "end"]),
    default="start",
    show_default=True,
    help="what the hour label means",
)
@click.option(
    "--hourly-aqi-out",
    type=click.Path(path_type=Path),
    default=None,
    metavar="FILE",
    help="write hourly AQI CSV",
)
@click.option(
    "--tasks",
    is_flag=True,
    help="print the tasks the owner would dispatch, with and without the regional logic",
)
@click.option(
    "--tasks-out",
    type=click.Path(path_type=Path),
    default=None,
    metavar="FILE",
    help="write the tasks as CSV (implies --tasks)",
)
@click.option(
    "--grid",
    type=click.Path(path_type=Path),
    default=DATA_DIR / "grids-beijing.json",
    help="grid directory naming the files' stations (default: the three Beijing stations)",
)
@click.option(
    "--policy",
    type=click.Path(path_type=Path),
    default=DATA_DIR / "policy.toml",
    help="escalation policy: feedback deadlines and [regional] dispatch (default: shipped)",
)
@click.option(
    "--dispatch",
    type=click.Choice(["level3", "level2", "level1", "none"]),
    default=None,
    help="dispatch during a regional episode (default: the policy's [regional] dispatch)",
)
@click.option(
    "--task-closing",
    type=click.Choice(["deadline", "cleared"]),
    default="deadline",
    show_default=True,
    help="when a task closes, history having no feedback: at its feedback deadline after dispatch, "
    "or once its alarms cleared and that deadline passed",
)
@click.option("--quiet", is_flag=True, help="no progress line")
def backtest(
    files: tuple[Path, ...],
    rules: Path,
    standard: str,
    warning_level: str,
    hour_label: str,
    hourly_aqi_out: Path | None,
    tasks: bool,
    tasks_out: Path | None,
    grid: Path,
    policy: Path,
    dispatch: str | None,
    task_closing: str,
    quiet: bool,
) -> int:
    """Run the alarm rules over historical hourly readings (Beijing Multi-Site CSV) without Kafka;
    print alarm episodes per station and month, or with --tasks the tasks per station and month
    and per grid-week, with and without the regional logic (docs/detection.md)."""
    from airgrid.domain.backtest import BacktestError, read_rows, render, run, summary
    from airgrid.domain.detection.compiled import AqiChoice, compile_rules
    from airgrid.domain.detection.hour import HOUR, standard_of
    from airgrid.domain.rules import RulesError, load_rules

    if not (tasks or tasks_out is not None) and (dispatch is not None or task_closing != "deadline"):
        raise OpsError("--dispatch and --task-closing go with --tasks (or --tasks-out)")
    if tasks_out is not None and not tasks_out.parent.is_dir():  # before a long run, not after
        raise OpsError(f"--tasks-out {tasks_out}: no directory {tasks_out.parent}")
    try:
        cat = load_rules(rules)
        rows = [row for f in files for row in read_rows(f, hour_label)]
    except (RulesError, BacktestError) as exc:
        raise OpsError(str(exc)) from None
    rs = compile_rules(cat, cast(WarningLevel, warning_level), aqi_standard=cast(AqiChoice, standard))
    replay = None
    if tasks or tasks_out is not None:
        replay = _task_replay(rows, rs, cat.regional, grid, policy, dispatch, warning_level, task_closing)
    progress = None if quiet else sys.stderr
    began = time.monotonic()
    if hourly_aqi_out is not None:
        try:
            with hourly_aqi_out.open("w", newline="", encoding="utf-8") as out:
                result = run(rows, rs, out, progress, observer=replay)
        except OSError as exc:
            raise OpsError(f"{hourly_aqi_out}: {exc.strerror}") from None
    else:
        result = run(rows, rs, None, progress, observer=replay)
    if replay is None:
        render(result, sys.stdout)
    else:
        _tasks_report(replay, tasks_out)
        print(summary(result))
    used = {standard_of(rs, r.end.timestamp() - HOUR).value for r in rows[:1] + rows[-1:]}
    print(
        f"{len(rows):,} rows in {time.monotonic() - began:.1f} s; AQI standard(s): {', '.join(sorted(used))}"
    )
    return 0


def _task_replay(
    rows: list[Row],
    rs: RuleSet,
    cfg: Regional | None,
    grid: Path,
    policy: Path,
    dispatch: str | None,
    warning: str,
    closing: str,
) -> TaskReplay:
    """The --tasks observer; every station of the files must be in the grid directory."""
    from airgrid.domain.backtest_tasks import TaskReplay
    from airgrid.domain.directory import Directory, DirectoryError
    from airgrid.domain.escalation import PolicyError, load_policy_book

    try:
        directory = Directory.load(grid)
        book = load_policy_book(policy)
    except (DirectoryError, PolicyError) as exc:
        raise OpsError(str(exc)) from None
    unknown = sorted({r.station for r in rows} - set(directory.stations))
    if unknown:
        raise OpsError(f"station(s) {', '.join(unknown)} not in the grid directory {grid} (--grid FILE)")
    located = sorted(s for s in directory.stations if directory.lineage(s) is None)
    if located:
        raise OpsError(f"station(s) {', '.join(located)} of {grid} are in no level-3 grid")
    how = cast("ClosingModel", closing)
    return TaskReplay(rs, cfg, directory, book, cast("RegionalDispatch | None", dispatch), warning, how)


def _tasks_report(replay: TaskReplay, tasks_out: Path | None) -> None:
    from airgrid.domain.backtest_tasks_report import render_tasks, write_tasks_csv

    replay.finish()
    render_tasks(replay, sys.stdout)
    if tasks_out is not None:
        try:
            with tasks_out.open("w", newline="", encoding="utf-8") as out:
                write_tasks_csv(replay, out)
        except OSError as exc:
            raise OpsError(f"{tasks_out}: {exc.strerror}") from None
