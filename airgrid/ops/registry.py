"""The operator commands, imported only when run (``airgrid --help`` stays fast)."""

from __future__ import annotations

import importlib
from collections.abc import Callable

Command = Callable[[list[str]], int]


def lazy(module: str, name: str) -> Command:
    def run(argv: list[str]) -> int:
        func: Command = getattr(importlib.import_module(f"airgrid.ops.{module}"), name)
        return func(argv)

    return run


OPS_COMMANDS: dict[str, Command] = {
    "tasks": lazy("cli_tasks", "cmd_tasks"),
    "feedback": lazy("cli_tasks", "cmd_feedback"),
    "replay": lazy("cli_replay", "cmd_replay"),
    "db": lazy("cli_replay", "cmd_db"),
    "schemas": lazy("cli_schemas", "cmd_schemas"),
    "report": lazy("cli_report", "cmd_report"),
}
