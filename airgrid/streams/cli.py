"""The ``airgrid`` command: the project's commands, and Faust's own (``airgrid worker``, ...)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from airgrid.config.settings import Settings, SettingsError, load_settings
from airgrid.gateway.cli import cmd_gateway
from airgrid.ops.registry import OPS_COMMANDS
from airgrid.sim.runner import SimConfig

OWN_HELP = """\
airgrid: air-quality alarms, dispatched to supervision grids, chased until closed.

Commands:
  worker              run the stream processor (Faust worker; `airgrid worker --help`)
  gateway             accept HJ 212-2017 stations over TCP, publish their readings (docs/gateway.md)
  demo                the whole loop on a local Kafka broker, with live output
  simulate            publish simulated station readings (and play grid workers)
  watch               print alarms, task events and dead letters as they happen
  topics              create every airgrid topic that is missing
  tasks list|show     tasks and their history, from the SQL projection
  feedback send       send a worker's action on a task to the feedback topic
  replay              replay a topic range into the SQL projection (idempotent)
  report              weekly|monthly|quarterly reports and the yearly grid assessment
  schemas             export the JSON Schemas of the public messages
  db upgrade|status   the projection database (Alembic migrations)
  grids check FILE    validate a grid directory file
  aqi POLLUTANT=VALUE ...   IAQI, AQI, category and primary pollutant
  backtest FILE...    run the alarm rules over historical hourly CSVs (no Kafka)
  kafka run|fetch|check|stop   the local development broker

Settings come from AIRGRID_* environment variables and the config file (AIRGRID_CONFIG_FILE);
see the README for the table. Faust's own commands (agents, tables, send, ...) also work.
"""


def _settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        print(f"airgrid: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _run(coro_factory: Callable[[Settings], object]) -> int:
    settings = _settings_or_exit()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)  # its INFO lines drown the output
    try:
        result: object = asyncio.run(coro_factory(settings))  # type: ignore[arg-type]
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        print(f"airgrid: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return int(result) if isinstance(result, int) else 0


def cmd_demo(argv: list[str]) -> int:
    import os

    from airgrid.streams.demo import run_demo

    p = argparse.ArgumentParser(
        prog="airgrid demo",
        description="The whole alarm loop on a "
        "local Kafka broker, fed by simulated stations. Ctrl-C stops it.",
    )
    _sim_args(p)
    a = p.parse_args(argv)
    cfg = _sim_config(a)
    given = "AIRGRID_BROKER" in os.environ
    return _run(lambda s: run_demo(s, given, cfg))


def _sim_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stations", type=int, default=12, help="how many stations (default 12)")
    p.add_argument("--step-minutes", type=int, default=10, help="event time per tick, minutes (default 10)")
    p.add_argument("--tick", type=float, default=0.5, help="wall seconds per tick (default 0.5)")
    p.add_argument("--ticks", type=int, default=None, help="stop after N ticks")
    p.add_argument(
        "--malformed-every",
        type=int,
        default=40,
        help="one malformed message every N ticks (0: none)",
    )


def _sim_config(a: argparse.Namespace) -> SimConfig:
    return SimConfig(
        stations=a.stations,
        step_minutes=a.step_minutes,
        tick_seconds=a.tick,
        ticks=a.ticks,
        malformed_every=a.malformed_every,
    )


def cmd_simulate(argv: list[str]) -> int:
    from airgrid.domain.directory import Directory
    from airgrid.sim.runner import GridWorkers, run_stations, run_workers

    p = argparse.ArgumentParser(
        prog="airgrid simulate", description="Publish simulated readings to the readings topic."
    )
    _sim_args(p)
    p.add_argument("--workers", action="store_true", help="also answer tasks as grid workers")
    p.add_argument(
        "--blast",
        type=int,
        default=None,
        metavar="N",
        help="load test: publish N readings as fast as possible (past event time), print the rate",
    )
    p.add_argument("--hj212", metavar="HOST:PORT", help="speak HJ 212-2017 to an `airgrid gateway` instead")
    a = p.parse_args(argv)
    cfg = _sim_config(a)

    async def go(s: Settings) -> int:
        directory = Directory.load(s.grid_file)
        if a.hj212:  # stations as data acquisition units: TCP to the gateway (airgrid/sim/hj212.py)
            from airgrid.sim.hj212 import Hj212Target, run_hj212_stations

            host, _, port = a.hj212.rpartition(":")
            await run_hj212_stations(s, directory, cfg, Hj212Target(host or "127.0.0.1", int(port)))
            return 0
        if a.blast:
            from datetime import UTC, datetime, timedelta

            from airgrid.sim.runner import blast

            ids = sorted(directory.stations)[: a.stations]
            per_station = a.blast // max(len(ids), 1) + 1
            start = datetime.now(UTC) - timedelta(minutes=per_station + 5)
            rate = await blast(s, ids, a.blast, start)
            print(f"published {a.blast} readings of {len(ids)} stations at {rate:,.0f} readings/s")
            return 0
        jobs = [run_stations(s, directory, cfg)]  # type: ignore[arg-type]
        if a.workers:
            jobs.append(run_workers(s, directory, GridWorkers(directory)))  # type: ignore[arg-type]
        await asyncio.gather(*jobs)
        return 0

    return _run(go)


def cmd_watch(argv: list[str]) -> int:
    from airgrid.streams.watch import watch

    p = argparse.ArgumentParser(
        prog="airgrid watch",
        description="Print alarms, task events and dead letters as readable lines.",
    )
    p.add_argument("--from-beginning", action="store_true", help="replay from the first message")
    p.add_argument("--limit", type=int, default=None, help="stop after N lines")
    a = p.parse_args(argv)
    return _run(lambda s: watch(s, from_beginning=a.from_beginning, limit=a.limit))


def cmd_topics(argv: list[str]) -> int:
    from airgrid.streams.topics import ensure_topics

    argparse.ArgumentParser(
        prog="airgrid topics", description="Create the airgrid topics that are missing."
    ).parse_args(argv)

    async def go(s: Settings) -> int:
        made = await ensure_topics(s)
        print("created: " + (", ".join(made) if made else "nothing, all topics exist"))
        return 0

    return _run(go)


def cmd_grids(argv: list[str]) -> int:
    from airgrid.domain.directory import Directory, parse_directory

    p = argparse.ArgumentParser(prog="airgrid grids", description="Grid directory tools.")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="validate a directory file and list every problem")
    c.add_argument("file", type=Path)
    a = p.parse_args(argv)
    doc, boundaries, problems = parse_directory(a.file)
    for problem in problems:
        print(problem)
    if doc is None or problems:
        print(f"{a.file}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    levels = [sum(1 for g in doc.grids if g.level == lv) for lv in (1, 2, 3)]
    located = sum(1 for st in doc.stations if st.grid is None)
    Directory(doc, tuple(boundaries))  # builds every lineage: proves the tree is usable
    print(
        f"{a.file}: ok: {levels[0]} level-1, {levels[1]} level-2, {levels[2]} level-3 grids "
        f"({sum(g.key for g in doc.grids)} key), {len(doc.workers)} workers, "
        f"{len(doc.stations)} stations ({located} located by boundary), "
        f"{len(boundaries)} level-3 boundaries"
    )
    return 0


def cmd_aqi(argv: list[str]) -> int:
    from airgrid.domain.aqi import main as aqi_main

    return aqi_main(argv)


def cmd_backtest(argv: list[str]) -> int:
    from airgrid.domain.backtest import main as backtest_main

    return backtest_main(argv)


def cmd_kafka(argv: list[str]) -> int:
    from airgrid.devkafka import main as kafka_main

    return kafka_main(argv)


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "demo": cmd_demo,
    "simulate": cmd_simulate,
    "watch": cmd_watch,
    "topics": cmd_topics,
    "grids": cmd_grids,
    "aqi": cmd_aqi,
    "backtest": cmd_backtest,
    "kafka": cmd_kafka,
    "gateway": cmd_gateway,  # airgrid/gateway/cli.py
    **OPS_COMMANDS,  # tasks, feedback, replay, db, schemas, report (airgrid/ops)
}


def run_faust(argv: list[str]) -> None:
    """Faust's CLI on the app built from the settings (``airgrid worker`` and friends)."""
    from airgrid.domain.directory import DirectoryError
    from airgrid.domain.escalation import PolicyError
    from airgrid.domain.rules import RulesError
    from airgrid.streams.app import create_app
    from airgrid.streams.topics import ensure_topics

    settings = _settings_or_exit()
    try:
        app = create_app(settings)
    except (DirectoryError, RulesError, PolicyError) as exc:
        print(f"airgrid: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if argv[:1] == ["worker"]:
        try:
            asyncio.run(asyncio.wait_for(ensure_topics(settings), 30))
        except Exception as exc:
            print(
                f"airgrid: cannot reach Kafka at {settings.broker} (AIRGRID_BROKER): "
                f"{type(exc).__name__}: {exc}",
                file=sys.stderr,
            )
            raise SystemExit(1) from None
    sys.argv = ["airgrid", *argv]
    # The directory and rule tables live as long as the worker: keep them out of the garbage
    # collector's full passes (measured: 150-250 ms pauses with 100,000 stations, halved by this).
    gc.collect()
    gc.freeze()
    app.main()


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(OWN_HELP)
        raise SystemExit(0)
    command = COMMANDS.get(args[0])
    if command is not None:
        raise SystemExit(command(args[1:]))
    run_faust(args)
