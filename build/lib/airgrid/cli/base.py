"""What every airgrid command is built from: click classes that print ``usage: airgrid ...``,
and the one-line error a command raises for the operator, with its exit code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

BAD_INPUT = 2  # a wrong argument, setting or data file: the operator fixes the input
UNREACHABLE = 1  # Kafka or the projection database does not answer, or the work failed


class OpsError(Exception):
    """A one-line problem for the operator, with the exit code it deserves; printed as
    ``airgrid: <message>`` by the command tree (airgrid.cli.run)."""

    def __init__(self, message: str, code: int = BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


class Formatter(click.HelpFormatter):
    """Help in airgrid's style: ``usage: airgrid ...`` (click says ``Usage:``)."""

    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        super().write_usage(prog, args, "usage: " if prefix is None else prefix)


class Context(click.Context):
    formatter_class = Formatter


class Command(click.Command):
    context_class = Context


class Group(click.Group):
    """A command with subcommands (``airgrid tasks list``); its subcommands are airgrid's too."""

    context_class = Context
    command_class = Command
    group_class = type  # subgroups of a Group are Groups


def command(name: str, **options: Any) -> Callable[[Callable[..., Any]], Command]:
    """``@click.command`` for an airgrid command: the callback returns the exit code."""
    made: Callable[[Callable[..., Any]], Command] = click.command(name, cls=Command, **options)
    return made


def group(name: str, **options: Any) -> Callable[[Callable[..., Any]], Group]:
    """``@click.group`` for an airgrid command with subcommands."""
    made: Callable[[Callable[..., Any]], Group] = click.group(name, cls=Group, **options)
    return made
