"""``airgrid grids check``: validate a grid directory file, every problem with its place."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from airgrid.cli.base import group


@group("grids")
def grids() -> None:
    """Grid directory tools."""


@grids.command("check")
@click.argument("file", type=click.Path(path_type=Path))
def check(file: Path) -> int:
    """Validate a directory file and the boundaries it names: every problem is listed with its
    place in the file (a JSON path), then the counts of grids, workers and stations. Exit 1 when
    there is a problem."""
    from airgrid.domain.directory import Directory, parse_directory

    doc, boundaries, problems = parse_directory(file)
    for problem in problems:
        print(problem)
    if doc is None or problems:
        print(f"{file}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    levels = [sum(1 for g in doc.grids if g.level == lv) for lv in (1, 2, 3)]
    located = sum(1 for st in doc.stations if st.grid is None)
    Directory(doc, tuple(boundaries))  # builds every lineage: proves the tree is usable
    print(
        f"{file}: ok: {levels[0]} level-1, {levels[1]} level-2, {levels[2]} level-3 grids "
        f"({sum(g.key for g in doc.grids)} key), {len(doc.workers)} workers, "
        f"{len(doc.stations)} stations ({located} located by boundary), "
        f"{len(boundaries)} level-3 boundaries"
    )
    return 0
