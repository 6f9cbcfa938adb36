"""``airgrid backtest``: the alarm rules over historical hourly readings, without Kafka."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import cast, get_args

import click

from airgrid.cli.base import OpsError, command
from airgrid.config.settings import DATA_DIR
from airgrid.domain.aqi import Standard
from airgrid.models.warnings import WarningLevel


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
@click.option("--quiet", is_flag=True, help="no progress line")
def backtest(
    files: tuple[Path, ...],
    rules: Path,
    standard: str,
    warning_level: str,
    hour_label: str,
    hourly_aqi_out: Path | None,
    quiet: bool,
) -> int:
    """Run the alarm rules over historical hourly readings (Beijing Multi-Site CSV) without Kafka;
    print alarm episodes per station and month (docs/detection.md)."""
    from airgrid.domain.backtest import BacktestError, read_rows, render, run
    from airgrid.domain.detection.compiled import AqiChoice, compile_rules
    from airgrid.domain.detection.hour import HOUR, standard_of
    from airgrid.domain.rules import RulesError, load_rules

    try:
        cat = load_rules(rules)
        rows = [row for f in files for row in read_rows(f, hour_label)]
    except (RulesError, BacktestError) as exc:
        raise OpsError(str(exc)) from None
    rs = compile_rules(cat, cast(WarningLevel, warning_level), aqi_standard=cast(AqiChoice, standard))
    progress = None if quiet else sys.stderr
    began = time.monotonic()
    if hourly_aqi_out is not None:
        try:
            with hourly_aqi_out.open("w", newline="", encoding="utf-8") as out:
                result = run(rows, rs, out, progress)
        except OSError as exc:
            raise OpsError(f"{hourly_aqi_out}: {exc.strerror}") from None
    else:
        result = run(rows, rs, None, progress)
    render(result, sys.stdout)
    used = {standard_of(rs, r.end.timestamp() - HOUR).value for r in rows[:1] + rows[-1:]}
    print(
        f"{len(rows):,} rows in {time.monotonic() - began:.1f} s; AQI standard(s): {', '.join(sorted(used))}"
    )
    return 0
