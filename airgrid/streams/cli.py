"""The ``airgrid`` command: the project's commands, and Faust's own (``airgrid worker``, ...)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from airgrid.config.settings import Settings, SettingsError, load_settings
from airgrid.sim.runner import SimConfig

OWN_HELP = """\
airgrid: air-quality alarms, dispatched to supervision grids, chased until closed.

Commands:
  worker              run the stream processor (Faust worker; `airgrid worker --help`)
  demo                the whole loop on a local Kafka broker, with live output
  simulate            publish simulated station readings (and play grid workers)
  watch               print alarms, task events and dead letters as they happen
  topics              create every airgrid topic that is missing
  tasks list|show     tasks and their history, from the SQL projection
  grids check FILE    validate a grid directory file
  aqi POLLUTANT=VALUE ...   IAQI, AQI, category and primary pollutant
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
    a = p.parse_args(argv)
    cfg = _sim_config(a)

    async def go(s: Settings) -> int:
        directory = Directory.load(s.grid_file)
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
    from airgrid.domain.directory import parse_file

    p = argparse.ArgumentParser(prog="airgrid grids", description="Grid directory tools.")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="validate a directory file and list every problem")
    c.add_argument("file", type=Path)
    a = p.parse_args(argv)
    doc, problems = parse_file(a.file)
    for problem in problems:
        print(problem)
    if doc is None or problems:
        print(f"{a.file}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    levels = [sum(1 for g in doc.grids if g.level == lv) for lv in (1, 2, 3)]
    print(
        f"{a.file}: ok: {levels[0]} level-1, {levels[1]} level-2, {levels[2]} level-3 grids "
        f"({sum(g.key for g in doc.grids)} key), {len(doc.workers)} workers, "
        f"{len(doc.stations)} stations"
    )
    return 0


def cmd_tasks(argv: list[str]) -> int:
    from airgrid.sinks.sql import iter_tasks, make_engine, task_history

    p = argparse.ArgumentParser(prog="airgrid tasks", description="Tasks from the projection.")
    sub = p.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="list tasks")
    ls.add_argument("--state", default=None)
    show = sub.add_parser("show", help="a task and its full history")
    show.add_argument("task_id")
    a = p.parse_args(argv)
    s = _settings_or_exit()
    engine = make_engine(s.sqlalchemy_url)
    if a.cmd == "list":
        for t in iter_tasks(engine, a.state):
            print(
                f"{t['task_id']:<32} {t['state']:<18} level {t['level']} grid {t['grid_id']:<12} "
                f"v{t['version']} updated {t['updated_at']}"
            )
        return 0
    history = task_history(engine, a.task_id)
    if not history:
        print(f"airgrid: no task {a.task_id} in {s.sqlalchemy_url}", file=sys.stderr)
        return 1
    for e in history:
        print(
            f"v{e['version']:<3} {e['at']} {e['type']:<20} {e['state']:<18} level {e['level']} "
            f"grid {e['grid_id']} {e['worker_id'] or ''} {e['note'] or ''}"
        )
    return 0


def cmd_aqi(argv: list[str]) -> int:
    from airgrid.domain.aqi import main as aqi_main

    return aqi_main(argv)


def cmd_kafka(argv: list[str]) -> int:
    from airgrid.devkafka import main as kafka_main

    return kafka_main(argv)


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "demo": cmd_demo,
    "simulate": cmd_simulate,
    "watch": cmd_watch,
    "topics": cmd_topics,
    "grids": cmd_grids,
    "tasks": cmd_tasks,
    "aqi": cmd_aqi,
    "kafka": cmd_kafka,
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
