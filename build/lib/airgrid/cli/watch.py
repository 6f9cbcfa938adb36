"""``airgrid watch``: alarms, task events and dead letters as readable lines."""

from __future__ import annotations

import click

from airgrid.cli.base import command
from airgrid.cli.common import run_async
from airgrid.config.settings import Settings


@command("watch")
@click.option("--from-beginning", is_flag=True, help="start at the first message of each topic")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="stop after N lines")
@click.option(
    "-e",
    "--to-end",
    is_flag=True,
    help="stop at the end of the topics as they were when watch started (like kcat -e); "
    "with --from-beginning, print everything they hold and exit",
)
def watch(from_beginning: bool, limit: int | None, to_end: bool) -> int:
    """Print alarms, task events, dead letters and rejected feedback as readable lines, as they
    happen, until Ctrl-C."""

    async def go(s: Settings) -> int:
        from airgrid.cli.broker import reach
        from airgrid.ops.watch import watch as lines

        await reach(s)
        await lines(s, from_beginning=from_beginning, limit=limit, to_end=to_end)
        return 0

    return run_async(go)
