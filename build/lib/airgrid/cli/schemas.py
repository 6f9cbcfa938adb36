"""``airgrid schemas``: export (or check) the JSON Schemas of the public messages."""

from __future__ import annotations

from pathlib import Path

import click

from airgrid.cli.base import command
from airgrid.ops import schemas as contracts


@command(
    "schemas",
    help="Write one JSON Schema (draft 2020-12) per public message, generated from airgrid's "
    "models: " + ", ".join(contracts.contracts()) + ".",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("schemas"),
    show_default=True,
    help="directory",
)
@click.option(
    "--check", is_flag=True, help="write nothing; exit 1 when the files in --out differ from the models"
)
def schemas(out: Path, check: bool) -> int:
    if check:
        problems = contracts.drift(out)
        for problem in problems:
            print(problem)
        if problems:
            print(f"schemas drifted: run `airgrid schemas --out {out}` and commit the result")
            return 1
        print(f"{out}: {len(contracts.contracts())} schemas match the models")
        return 0
    for path in contracts.export(out):
        print(path)
    return 0
