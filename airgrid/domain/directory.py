"""The grid directory in memory: lineage of a station, a worker's grid, and consistency checks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from airgrid.models.grid import Grid, GridDirectoryFile, Station, Worker
from airgrid.models.tasks import Lineage


class DirectoryError(Exception):
    """The directory file is unreadable or inconsistent; the message lists every problem."""


@dataclass(frozen=True)
class Problem:
    """One problem in a directory file, with its place (a JSON path)."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


class Directory:
    """Lookups over a validated directory; build it with :meth:`load` or :meth:`from_file_model`."""

    def __init__(self, doc: GridDirectoryFile) -> None:
        self.doc = doc
        self.city = doc.city
        self.grids: dict[str, Grid] = {g.id: g for g in doc.grids}
        self.workers: dict[str, Worker] = {w.id: w for w in doc.workers}
        self.stations: dict[str, Station] = {s.id: s for s in doc.stations}
        self._lineage: dict[str, Lineage] = {}
        for st in doc.stations:
            if st.grid is not None:
                self._lineage[st.id] = self.lineage_of_grid(st.grid)

    @classmethod
    def load(cls, path: Path) -> Directory:
        doc, problems = parse_file(path)
        if doc is None or problems:
            raise DirectoryError(
                f"grid directory {path} has {len(problems)} problem(s): "
                + "; ".join(str(p) for p in problems[:10])
            )
        return cls(doc)

    def lineage_of_grid(self, grid_id: str) -> Lineage:
        g3 = self.grids[grid_id]
        g2 = self.grids[g3.parent or ""]
        g1 = self.grids[g2.parent or ""]
        return Lineage(l3=g3.id, l2=g2.id, l1=g1.id, key_grid=g3.key)

    def lineage(self, station_id: str) -> Lineage | None:
        """The grid chain responsible for a station, or None for an unknown station."""
        return self._lineage.get(station_id)

    def level_of_grid(self, grid_id: str) -> int | None:
        g = self.grids.get(grid_id)
        return g.level if g else None


def parse_file(path: Path) -> tuple[GridDirectoryFile | None, list[Problem]]:
    """Read and check a directory file; return the model (if it parsed) and every problem."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return None, [Problem(str(path), f"cannot read: {exc.strerror}")]
    except json.JSONDecodeError as exc:
        return None, [Problem(f"{path}:{exc.lineno}:{exc.colno}", f"not JSON: {exc.msg}")]
    try:
        doc = GridDirectoryFile.model_validate(raw)
    except ValidationError as exc:
        return None, [Problem("$." + ".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]
    return doc, check(doc)


def check(doc: GridDirectoryFile) -> list[Problem]:
    """Every consistency problem: tree shape, duplicates, workers and stations attached."""
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for i, g in enumerate(doc.grids):
        where = f"$.grids[{i}] ({g.id})"
        if g.id in seen:
            problems.append(Problem(where, f"duplicate grid id, first at $.grids[{seen[g.id]}]"))
            continue
        seen[g.id] = i
    grids = {g.id: g for g in doc.grids}
    for i, g in enumerate(doc.grids):
        where = f"$.grids[{i}] ({g.id})"
        if g.level == 1:
            if g.parent is not None:
                problems.append(Problem(where, "a level-1 grid has no parent"))
            continue
        parent = grids.get(g.parent or "")
        if parent is None:
            problems.append(Problem(where, f"parent {g.parent!r} is not a grid"))
        elif parent.level != g.level - 1:
            problems.append(
                Problem(where, f"parent {parent.id} is level {parent.level}, expected {g.level - 1}")
            )
    wseen: dict[str, int] = {}
    for i, w in enumerate(doc.workers):
        where = f"$.workers[{i}] ({w.id})"
        if w.id in wseen:
            problems.append(Problem(where, f"duplicate worker id, first at $.workers[{wseen[w.id]}]"))
        wseen.setdefault(w.id, i)
        if w.grid not in grids:
            problems.append(Problem(where, f"grid {w.grid!r} does not exist"))
    sseen: dict[str, int] = {}
    for i, st in enumerate(doc.stations):
        where = f"$.stations[{i}] ({st.id})"
        if st.id in sseen:
            problems.append(Problem(where, f"duplicate station id, first at $.stations[{sseen[st.id]}]"))
        sseen.setdefault(st.id, i)
        if st.grid is None:
            problems.append(Problem(where, "station is in no level-3 grid"))
            continue
        home = grids.get(st.grid)
        if home is None:
            problems.append(Problem(where, f"grid {st.grid!r} does not exist"))
        elif home.level != 3:
            problems.append(Problem(where, f"grid {st.grid} is level {home.level}, expected 3"))
    return problems
