"""Summarise a py-spy ``--format raw`` (collapsed stacks) file: where the worker spends its time."""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
AREAS = (
    ("airgrid/", "airgrid"),
    ("pydantic", "pydantic"),
    ("orjson", "orjson"),
    ("faust/", "faust"),
    ("mode/", "mode"),
    ("aiokafka/", "aiokafka"),
    ("sqlalchemy", "sqlalchemy"),
    ("rocksdict", "rocksdict"),
    ("prometheus_client", "prometheus_client"),
    ("asyncio/", "asyncio"),
    ("logging/", "logging"),
)


def _short(file: str) -> str:
    for marker in ("site-packages/", "/src/", "python3.11/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def _frame(raw: str) -> str:
    m = FRAME.match(raw.strip())
    return f"{m['fn']} ({_short(m['file'])})" if m else raw.strip()


def summarise(path: Path, top: int = 20) -> dict[str, Any]:
    """Self and inclusive shares of the top functions, and inclusive shares by library."""
    if not path.exists():
        return {"error": f"no profile at {path}"}
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = [_frame(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        self_c[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
        for area in {name for f in frames for marker, name in AREAS if marker in f}:
            areas[area] += count
    if not total:
        return {"error": "empty profile", "samples": 0}

    def pct(cn: Counter[str]) -> list[list[Any]]:
        return [[name, round(100 * v / total, 1)] for name, v in cn.most_common(top)]

    airgrid_incl = Counter({k: v for k, v in incl.items() if "airgrid/" in k})
    return {
        "samples": total,
        "file": str(path),
        "by_library_inclusive_pct": pct(areas),
        "top_self_pct": pct(self_c),
        "top_airgrid_inclusive_pct": pct(airgrid_incl),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(summarise(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 25), indent=2))
