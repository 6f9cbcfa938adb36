"""The ``airgrid`` command: one click tree; each command's module is imported only when it runs.

To add a command, write ``airgrid/cli/<name>.py`` with an ``@command(...)`` (or ``@group(...)``)
from :mod:`airgrid.cli.base` whose callback returns the exit code and raises
:class:`~airgrid.cli.base.OpsError` for a one-line error, then add one line to ``COMMANDS``
below: that line is the whole registration (``airgrid --help`` lists it, in this order).
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from typing import NoReturn

import click

from airgrid.cli.base import Group, OpsError


@dataclass(frozen=True)
class Entry:
    target: str  # "module:attribute" of the click command
    summary: str  # its line in `airgrid --help` (the module is not imported to show it)


COMMANDS: dict[str, Entry] = {
    "worker": Entry("airgrid.cli.worker:worker", "run the stream processor (a Faust worker)"),
    "gateway": Entry(
        "airgrid.cli.gateway:gateway", "accept HJ 212-2017 stations over TCP, publish their readings"
    ),
    "demo": Entry("airgrid.cli.demo:demo", "the whole loop on a local Kafka broker, with live output"),
    "simulate": Entry("airgrid.cli.simulate:simulate", "publish simulated readings (and play grid workers)"),
    "watch": Entry("airgrid.cli.watch:watch", "print alarms, task events and dead letters as they happen"),
    "topics": Entry("airgrid.cli.topics:topics", "create every airgrid topic that is missing"),
    "tasks": Entry("airgrid.cli.tasks:tasks", "list tasks, or show one with its history (SQL projection)"),
    "feedback": Entry("airgrid.cli.feedback:feedback", "send a grid worker's action on a task"),
    "sources": Entry("airgrid.cli.sources:sources", "the pollution-source register (SQL projection)"),
    "replay": Entry("airgrid.cli.replay:replay", "replay a topic range into the SQL projection"),
    "report": Entry("airgrid.cli.report:report", "weekly, monthly, quarterly reports; yearly assessment"),
    "schemas": Entry("airgrid.cli.schemas:schemas", "export (or check) the JSON Schemas of the messages"),
    "db": Entry("airgrid.cli.db:db", "the projection database: migrate it, or show its state"),
    "grids": Entry("airgrid.cli.grids:grids", "check a grid directory file"),
    "aqi": Entry("airgrid.cli.aqi:aqi", "IAQI, AQI, category and primary pollutant of concentrations"),
    "backtest": Entry("airgrid.cli.backtest:backtest", "run the alarm rules over historical hourly CSVs"),
    "kafka": Entry("airgrid.cli.kafka:kafka", "the local development broker: run, fetch, check, stop"),
}

EPILOG = (
    "Settings come from AIRGRID_* environment variables over the config file (AIRGRID_CONFIG_FILE); "
    "the README has the table. `airgrid COMMAND -h` shows a command's options."
)


class Tree(Group):
    """The root: lists COMMANDS without importing them; imports one when it is called."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module, _, attribute = entry.target.partition(":")
        found: click.Command = getattr(importlib.import_module(module), attribute)
        return found

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, entry.summary) for name, entry in COMMANDS.items()])


@click.group(
    "airgrid",
    cls=Tree,
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="airgrid", prog_name="airgrid", message="%(prog)s %(version)s")
def root() -> None:
    """airgrid: air-quality alarms, dispatched to supervision grids, chased until closed."""


def run(argv: list[str] | None = None) -> int:
    """Run one command line (without the program name); its exit code. Every error is one line
    on stderr starting ``airgrid:``; a closed stdout (``airgrid ... | head``) ends quietly."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["help"]:  # `airgrid help tasks list` is `airgrid tasks list --help`
        args = [*args[1:], "--help"]
    try:
        with root.make_context("airgrid", args) as ctx:
            result = root.invoke(ctx)
        return result if isinstance(result, int) else 0
    except click.exceptions.Exit as exc:  # --help, --version
        return exc.exit_code
    except click.exceptions.NoArgsIsHelpError as exc:
        # `airgrid` alone is a request for help; `airgrid tasks` lacks its subcommand
        asked = exc.ctx is None or exc.ctx.parent is None
        print(exc.format_message(), file=sys.stdout if asked else sys.stderr)
        return 0 if asked else exc.exit_code
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "airgrid"
        _error(f"{exc.format_message().rstrip('.')} (see '{where} -h')")
        return exc.exit_code
    except OpsError as exc:
        _error(str(exc))
        return exc.code
    except click.ClickException as exc:
        _error(exc.format_message())
        return exc.exit_code
    except (KeyboardInterrupt, click.Abort):
        return 130
    except BrokenPipeError:
        return _stdout_closed()


def main(argv: list[str] | None = None) -> NoReturn:
    """The ``airgrid`` program (``python -m airgrid``, the console script)."""
    code = run(argv)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = _stdout_closed()
    raise SystemExit(code)


def _error(message: str) -> None:
    print(f"airgrid: {message}", file=sys.stderr)


def _stdout_closed() -> int:
    """The reader of stdout went away (``| head``): point stdout at /dev/null so that the flush
    at exit does not fail again, and exit as a program killed by SIGPIPE would (128 + 13)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
    return 141


__all__ = ["COMMANDS", "Entry", "main", "root", "run"]
