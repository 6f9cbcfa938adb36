"""``airgrid simulate``: simulated stations (and grid workers) against any broker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from airgrid.cli.base import OpsError, command
from airgrid.cli.common import run_async
from airgrid.config.settings import Settings
from airgrid.sim.runner import SimConfig

F = TypeVar("F", bound=Callable[..., Any])


def sim_options(f: F) -> F:
    """The options of the simulated stations (``simulate`` and ``demo``)."""
    options = [
        click.option("--stations", type=int, default=12, show_default=True, help="how many stations"),
        click.option(
            "--step-minutes", type=int, default=10, show_default=True, help="event time per tick, minutes"
        ),
        click.option("--tick", type=float, default=0.5, show_default=True, help="wall seconds per tick"),
        click.option("--ticks", type=int, default=None, help="stop after N ticks"),
        click.option(
            "--malformed-every",
            type=int,
            default=40,
            show_default=True,
            help="one malformed message every N ticks (0: none)",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def sim_config(
    stations: int, step_minutes: int, tick: float, ticks: int | None, malformed_every: int
) -> SimConfig:
    return SimConfig(
        stations=stations,
        step_minutes=step_minutes,
        tick_seconds=tick,
        ticks=ticks,
        malformed_every=malformed_every,
    )


@command("simulate")
@sim_options
@click.option("--workers", is_flag=True, help="also answer tasks as grid workers")
@click.option(
    "--blast",
    type=int,
    default=None,
    metavar="N",
    help="load test: publish N readings as fast as possible (past event time), print the rate",
)
@click.option("--hj212", metavar="HOST:PORT", help="speak HJ 212-2017 to an `airgrid gateway` instead")
@click.option(
    "--connect-timeout",
    type=click.FloatRange(min=0.5),
    default=30.0,
    show_default=True,
    help="with --hj212: how long to wait for the gateway to accept a connection",
)
def simulate(workers: bool, blast: int | None, hj212: str | None, connect_timeout: float, **sim: Any) -> int:
    """Publish simulated station readings to the readings topic (10 minutes of event time per
    tick from 36 hours ago, then in real time), with recurring pollution episodes."""
    cfg = sim_config(**sim)

    async def go(s: Settings) -> int:
        from airgrid.cli.broker import reach
        from airgrid.domain.directory import Directory
        from airgrid.sim.runner import GridWorkers, run_stations, run_workers

        directory = Directory.load(s.grid_file)
        if not hj212:  # the stations talk to Kafka (with --hj212 only the gateway does)
            await reach(s)
        if hj212:  # stations as data acquisition units: TCP to the gateway (airgrid/sim/hj212.py)
            from airgrid.cli.base import UNREACHABLE
            from airgrid.sim.hj212 import Hj212Target, run_hj212_stations, wait_for_gateway

            host, _, port = hj212.rpartition(":")
            if not port.isdigit():
                raise OpsError(f"--hj212: {hj212!r} is not HOST:PORT")
            target = Hj212Target(host or "127.0.0.1", int(port))
            try:
                await wait_for_gateway(target.host, target.port, connect_timeout)
            except ConnectionError as exc:
                raise OpsError(str(exc), UNREACHABLE) from None
            stats = await run_hj212_stations(s, directory, cfg, target)
            print(
                f"sent {stats.readings} reading(s) to the gateway at {target.host}:{target.port}, "
                f"each acknowledged (CN 9014), and {stats.malformed} malformed frame(s)"
            )
            return 0
        if blast:
            from datetime import UTC, datetime, timedelta

            from airgrid.sim.runner import blast as publish

            ids = sorted(directory.stations)[: cfg.stations]
            per_station = blast // max(len(ids), 1) + 1
            start = datetime.now(UTC) - timedelta(minutes=per_station + 5)
            rate = await publish(s, ids, blast, start)
            print(f"published {blast} readings of {len(ids)} stations at {rate:,.0f} readings/s")
            return 0
        jobs: list[Coroutine[Any, Any, object]] = [run_stations(s, directory, cfg)]
        if workers:
            jobs.append(run_workers(s, directory, GridWorkers(directory)))
        await asyncio.gather(*jobs)
        return 0

    return run_async(go)
