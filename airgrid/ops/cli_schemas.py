"""``airgrid schemas``: export (or check) the JSON Schemas of the public messages."""

from __future__ import annotations

import argparse
from pathlib import Path

from airgrid.ops import schemas


def cmd_schemas(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="airgrid schemas",
        description="Write one JSON Schema (draft 2020-12) per public message, generated from "
        "airgrid's models: " + ", ".join(schemas.contracts()) + ".",
    )
    p.add_argument("--out", type=Path, default=Path("schemas"), help="directory (default: schemas)")
    p.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when the files in --out differ from the models",
    )
    a = p.parse_args(argv)
    if a.check:
        problems = schemas.drift(a.out)
        for problem in problems:
            print(problem)
        if problems:
            print(f"schemas drifted: run `airgrid schemas --out {a.out}` and commit the result")
            return 1
        print(f"{a.out}: {len(schemas.contracts())} schemas match the models")
        return 0
    for path in schemas.export(a.out):
        print(path)
    return 0
