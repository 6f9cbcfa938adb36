"""The grid directory in memory: lineage of a station, a worker's grid, and consistency checks."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from airgrid.domain.geo import Boundary, Locator, load_boundaries
from airgrid.models.grid import Grid, GridDirectoryFile, Station, Worker
from airgrid.models.readings import Wind
from airgrid.models.tasks import Lineage

if TYPE_CHECKING:
    from airgrid.config.settings import Settings


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

    def __init__(self, doc: GridDirectoryFile, boundaries: tuple[Boundary, ...] = ()) -> None:
        self.doc = doc
        self.city = doc.city
        self.grids: dict[str, Grid] = {g.id: g for g in doc.grids}
        self.workers: dict[str, Worker] = {w.id: w for w in doc.workers}
        self.stations: dict[str, Station] = {s.id: s for s in doc.stations}
        # HJ 212 station codes (the gateway's lookup); MNs are unique in a checked directory
        self.by_mn: dict[str, Station] = {s.mn: s for s in doc.stations if s.mn is not None}
        self.locator = Locator(boundaries)
        self._lineage: dict[str, Lineage] = {}
        for st in doc.stations:
            grid = station_grid(st, self.locator)
            if grid is not None:
                self._lineage[st.id] = self.lineage_of_grid(grid)

    @classmethod
    def load(cls, path: Path) -> Directory:
        doc, boundaries, problems = parse_directory(path)
        if doc is None or problems:
            raise DirectoryError(
                f"grid directory {path} has {len(problems)} problem(s): "
                + "; ".join(str(p) for p in problems[:10])
            )
        return cls(doc, tuple(boundaries))

    def neighbours(self, station_id: str, radius_km: float) -> tuple[str, ...]:
        """Other level-3 grids whose centre lies within ``radius_km`` of the station, nearest
        first (co-notification); empty without boundaries or for an unknown station."""
        st = self.stations.get(station_id)
        lineage = self._lineage.get(station_id)
        if st is None or lineage is None or radius_km <= 0:
            return ()
        near = self.locator.within((st.lon, st.lat), radius_km)
        return tuple(g for _, g in near if g != lineage.l3)

    def upwind(
        self, station_id: str, wind_from_deg: float, sector_deg: float, radius_km: float
    ) -> tuple[str, ...]:
        """Other level-3 grids upwind of the station: centre within ``radius_km`` and initial
        great-circle bearing from the station within ``sector_deg / 2`` of ``wind_from_deg`` (the
        direction the wind comes from), nearest first; empty as :meth:`neighbours`."""
        st = self.stations.get(station_id)
        lineage = self._lineage.get(station_id)
        if st is None or lineage is None or radius_km <= 0 or sector_deg <= 0:
            return ()
        found = self.locator.upwind((st.lon, st.lat), wind_from_deg, sector_deg, radius_km)
        return tuple(g for _, g in found if g != lineage.l3)

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


@dataclass(frozen=True)
class Upwind:
    """Upwind co-notification: the level-3 grids within ``radius_km`` of the station, in a sector
    of ``sector_deg`` centred on the direction the wind comes from (0 km: off). A wind slower
    than ``min_speed`` m/s is calm (its direction says nothing): no grid is upwind then, nor
    without a wind."""

    radius_km: float = 0.0
    sector_deg: float = 60.0
    min_speed: float = 0.5

    @classmethod
    def of(cls, settings: Settings) -> Upwind:
        return cls(settings.upwind_radius_km, settings.upwind_sector_degrees, settings.upwind_min_wind_speed)

    def grids(self, directory: Directory, station_id: str, wind: Wind | None) -> tuple[str, ...]:
        if self.radius_km <= 0 or wind is None or wind.speed < self.min_speed:
            return ()
        return directory.upwind(station_id, wind.direction, self.sector_deg, self.radius_km)


NO_UPWIND = Upwind(radius_km=0.0)  # upwind co-notification off


def station_grid(st: Station, locator: Locator) -> str | None:
    """The explicit grid of a station, else the one boundary that contains it."""
    if st.grid is not None:
        return st.grid
    found = locator.locate(st.lon, st.lat)
    return found[0] if len(found) == 1 else None


def parse_file(path: Path) -> tuple[GridDirectoryFile | None, list[Problem]]:
    """Read and check a directory file; return the model (if it parsed) and every problem."""
    doc, _, problems = parse_directory(path)
    return doc, problems


def parse_directory(path: Path) -> tuple[GridDirectoryFile | None, list[Boundary], list[Problem]]:
    """Read a directory file and the boundaries it names; check both; report every problem.
    A file that breaks the schema has no model (None), and its entries that do fit the schema
    are still checked against each other, so one run lists every problem."""
    raw = _read(path)
    if isinstance(raw, list):
        return None, [], raw
    try:
        doc = GridDirectoryFile.model_validate(raw)
    except ValidationError as exc:
        schema = [Problem(json_path(raw, e["loc"]), e["msg"]) for e in exc.errors()]
        return None, [], schema + _check_what_fits(raw, path)
    boundaries, problems = _boundaries(doc.boundaries, path)
    return doc, boundaries, problems + check(doc, boundaries)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return [Problem(str(path), f"cannot read: {exc.strerror}")]
    except json.JSONDecodeError as exc:
        return [Problem(f"{path}:{exc.lineno}:{exc.colno}", f"not JSON: {exc.msg}")]


def _boundaries(name: str | None, path: Path) -> tuple[list[Boundary], list[Problem]]:
    if name is None:
        return [], []
    found, geo = load_boundaries(path.parent / name)
    return found, [Problem(p.where, p.what) for p in geo]


def json_path(raw: Any, loc: tuple[int | str, ...]) -> str:
    """A pydantic error location in the style of every other problem: ``$.grids[2] (A1a).level``
    (an entry's index, then its id when it has one)."""
    out, node = "$", raw
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("id"), str):
                out += f" ({node['id']})"
        else:
            out += f".{part}"
            node = node.get(part) if isinstance(node, dict) else None
    return out


SECTIONS: dict[str, type[BaseModel]] = {"grids": Grid, "workers": Worker, "stations": Station}


def _check_what_fits(raw: Any, path: Path) -> list[Problem]:
    """The consistency problems among the entries that fit the schema (of a file that does not)."""
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k), list) for k in SECTIONS):
        return []
    kept: dict[str, list[Any]] = {}
    at: dict[str, list[int]] = {}
    broken: set[str] = set()  # ids of entries that break the schema: reported once, above
    for section, model in SECTIONS.items():
        kept[section], at[section] = [], []
        for i, item in enumerate(raw[section]):
            try:
                kept[section].append(model.model_validate(item))
                at[section].append(i)
            except ValidationError:
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    broken.add(item["id"])
    doc = GridDirectoryFile.model_construct(
        city=str(raw.get("city")), grids=kept["grids"], workers=kept["workers"], stations=kept["stations"]
    )
    name = raw.get("boundaries")
    boundaries, problems = _boundaries(name if isinstance(name, str) else None, path)
    return problems + check(doc, boundaries, broken=broken, at=at)


def check(
    doc: GridDirectoryFile,
    boundaries: list[Boundary] | None = None,
    *,
    broken: AbstractSet[str] = frozenset(),
    at: Mapping[str, Sequence[int]] | None = None,
) -> list[Problem]:
    """Every consistency problem: tree shape, duplicates (ids, station MNs), workers and stations
    attached, and with boundaries: each names a level-3 grid once, each station lies in exactly
    one. ``broken``: ids of grids that are in the file but break its schema (a reference to one is
    no problem of its own); ``at``: the entries' indexes in the file when some were left out."""

    def idx(section: str, i: int) -> int:
        return at[section][i] if at else i

    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for i, g in enumerate(doc.grids):
        where = f"$.grids[{idx('grids', i)}] ({g.id})"
        if g.id in seen:
            problems.append(Problem(where, f"duplicate grid id, first at $.grids[{seen[g.id]}]"))
            continue
        seen[g.id] = idx("grids", i)
    grids = {g.id: g for g in doc.grids}
    for i, g in enumerate(doc.grids):
        where = f"$.grids[{idx('grids', i)}] ({g.id})"
        if g.level == 1:
            if g.parent is not None:
                problems.append(Problem(where, "a level-1 grid has no parent"))
            continue
        parent = grids.get(g.parent or "")
        if parent is None:
            if g.parent not in broken:
                problems.append(Problem(where, f"parent {g.parent!r} is not a grid"))
        elif parent.level != g.level - 1:
            problems.append(
                Problem(where, f"parent {parent.id} is level {parent.level}, expected {g.level - 1}")
            )
    wseen: dict[str, int] = {}
    for i, w in enumerate(doc.workers):
        where = f"$.workers[{idx('workers', i)}] ({w.id})"
        if w.id in wseen:
            problems.append(Problem(where, f"duplicate worker id, first at $.workers[{wseen[w.id]}]"))
        wseen.setdefault(w.id, idx("workers", i))
        if w.grid not in grids and w.grid not in broken:
            problems.append(Problem(where, f"grid {w.grid!r} does not exist"))
    problems += _check_boundaries(boundaries or [], grids, broken)
    locator = Locator(boundaries or [])
    sseen: dict[str, int] = {}
    mseen: dict[str, int] = {}
    for i, st in enumerate(doc.stations):
        where = f"$.stations[{idx('stations', i)}] ({st.id})"
        if st.id in sseen:
            problems.append(Problem(where, f"duplicate station id, first at $.stations[{sseen[st.id]}]"))
        sseen.setdefault(st.id, idx("stations", i))
        if st.mn is not None:
            if st.mn in mseen:  # the gateway finds a station by its MN: one MN, one station
                problems.append(Problem(where, f"duplicate MN {st.mn}, first at $.stations[{mseen[st.mn]}]"))
            mseen.setdefault(st.mn, idx("stations", i))
        if st.grid is None or st.grid not in broken:
            problems += [Problem(where, what) for what in _station_problems(st, grids, locator)]
    return problems


def _check_boundaries(
    boundaries: list[Boundary], grids: dict[str, Grid], broken: AbstractSet[str] = frozenset()
) -> list[Problem]:
    problems: list[Problem] = []
    first: dict[str, str] = {}
    for b in boundaries:
        grid = grids.get(b.grid_id)
        if grid is None:
            if b.grid_id not in broken:
                problems.append(Problem(b.where, f"grid {b.grid_id!r} does not exist"))
        elif grid.level != 3:
            problems.append(Problem(b.where, f"grid {b.grid_id} is level {grid.level}, expected 3"))
        if b.grid_id in first:
            problems.append(
                Problem(b.where, f"second boundary of grid {b.grid_id}, first at {first[b.grid_id]}")
            )
        first.setdefault(b.grid_id, b.where)
    return problems


def _station_problems(st: Station, grids: dict[str, Grid], locator: Locator) -> list[str]:
    at = f"({st.lon}, {st.lat})"
    found = locator.locate(st.lon, st.lat) if locator.boundaries else []
    if len(found) > 1:
        return [
            f"station at {at} lies in {len(found)} level-3 grids ({', '.join(found)}): overlapping boundaries"
        ]
    if st.grid is None:
        if not locator.boundaries:
            return ["station is in no level-3 grid"]
        if not found:
            return [f"station at {at} is in no level-3 grid: no explicit grid and no boundary contains it"]
        return []
    home = grids.get(st.grid)
    if home is None:
        return [f"grid {st.grid!r} does not exist"]
    if home.level != 3:
        return [f"grid {st.grid} is level {home.level}, expected 3"]
    if found and found[0] != st.grid:
        return [f"explicit grid {st.grid} but the station at {at} lies in the boundary of {found[0]}"]
    return []
