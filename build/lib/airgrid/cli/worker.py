"""``airgrid worker``: the stream processor."""

from __future__ import annotations

import click

from airgrid.cli.base import OpsError, command
from airgrid.cli.common import settings


@command("worker")
@click.option(
    "-l",
    "--loglevel",
    default="info",
    show_default=True,
    metavar="LEVEL",
    help="log level: debug, info, warning, error",
)
def worker(loglevel: str) -> int:
    """Run the stream processor: create the missing topics, join the consumer group and process
    readings, alarms, tasks and feedback until stopped (SIGTERM, Ctrl-C). Several workers with
    the same AIRGRID_APP_ID share the partitions; each needs its own AIRGRID_DATA_DIR and
    AIRGRID_WEB_PORT. Metrics and health at http://AIRGRID_WEB_HOST:AIRGRID_WEB_PORT/metrics.

    Exit codes: 2 a wrong setting or data file, 1 Kafka unreachable."""
    from airgrid.worker import StartError, run

    s = settings()
    try:
        return run(s, loglevel)
    except StartError as exc:
        raise OpsError(str(exc), exc.code) from None
