"""Grid boundaries: GeoJSON polygons of level-3 grids, point-in-polygon and distances (pure Python)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

Point = tuple[float, float]  # (lon, lat), GeoJSON order
Ring = tuple[Point, ...]
Polygon = tuple[Ring, ...]  # outer ring, then holes
EARTH_RADIUS_KM = 6371.0088


@dataclass(frozen=True)
class GeoProblem:
    """One problem in a boundaries file, with its place (a JSON path)."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass(frozen=True)
class Boundary:
    """The area of one grid: one or more polygons (a GeoJSON Polygon or MultiPolygon)."""

    grid_id: str
    polygons: tuple[Polygon, ...]
    where: str = ""

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        xs = [p[0] for poly in self.polygons for p in poly[0]]
        ys = [p[1] for poly in self.polygons for p in poly[0]]
        return min(xs), min(ys), max(xs), max(ys)

    @property
    def centre(self) -> Point:
        """Mean of the outer-ring vertices (closing vertex excluded): enough for neighbour radii."""
        pts = [p for poly in self.polygons for p in poly[0][:-1]]
        return sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)

    def contains(self, lon: float, lat: float) -> bool:
        return any(polygon_contains(poly, lon, lat) for poly in self.polygons)


def ring_contains(ring: Sequence[Point], lon: float, lat: float) -> bool:
    """Ray casting (even-odd rule); the ring is closed (first == last)."""
    inside = False
    for (x1, y1), (x2, y2) in pairwise(ring):
        if (y1 > lat) != (y2 > lat):
            x_cross = x1 + (lat - y1) * (x2 - x1) / (y2 - y1)
            if lon < x_cross:
                inside = not inside
    return inside


def polygon_contains(poly: Polygon, lon: float, lat: float) -> bool:
    outer, *holes = poly
    return ring_contains(outer, lon, lat) and not any(ring_contains(h, lon, lat) for h in holes)


def distance_km(a: Point, b: Point) -> float:
    """Great-circle (haversine) distance between two (lon, lat) points."""
    lon1, lat1, lon2, lat2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def bearing_deg(a: Point, b: Point) -> float:
    """Initial great-circle bearing from ``a`` to ``b``, degrees clockwise from north, in [0, 360)."""
    lon1, lat1, lon2, lat2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    y = math.sin(lon2 - lon1) * math.cos(lat2)
    x = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(lon2 - lon1)
    return math.degrees(math.atan2(y, x)) % 360.0


def in_sector(bearing: float, towards: float, sector_deg: float) -> bool:
    """``bearing`` lies within ``sector_deg / 2`` of ``towards`` either side (edges included),
    across north (350 and 10 are 20 degrees apart)."""
    off = abs((bearing - towards + 180.0) % 360.0 - 180.0)
    return off <= sector_deg / 2


class Locator:
    """Which boundaries contain a point (bounding boxes first, then ray casting)."""

    def __init__(self, boundaries: Iterable[Boundary]) -> None:
        self.boundaries = tuple(boundaries)
        self._boxes = [(b.bbox, b) for b in self.boundaries]
        self._centres = [(b.centre, b.grid_id) for b in self.boundaries]

    def locate(self, lon: float, lat: float) -> list[str]:
        return [
            b.grid_id
            for (x0, y0, x1, y1), b in self._boxes
            if x0 <= lon <= x1 and y0 <= lat <= y1 and b.contains(lon, lat)
        ]

    def within(self, point: Point, radius_km: float) -> list[tuple[float, str]]:
        """(distance, grid) of every boundary whose centre lies within ``radius_km``, nearest first."""
        near = [(distance_km(point, b.centre), b.grid_id) for b in self.boundaries]
        return sorted((d, g) for d, g in near if d <= radius_km)

    def upwind(
        self, point: Point, wind_from_deg: float, sector_deg: float, radius_km: float
    ) -> list[tuple[float, str]]:
        """(distance, grid) of every boundary whose centre lies within ``radius_km`` and whose
        bearing from ``point`` is within ``sector_deg / 2`` of the direction the wind comes from
        (the air reaching ``point`` passed over it), nearest first."""
        near = [(distance_km(point, c), g, c) for c, g in self._centres]
        return sorted(
            (d, g)
            for d, g, c in near
            if d <= radius_km and in_sector(bearing_deg(point, c), wind_from_deg, sector_deg)
        )


def _ring(raw: Any, where: str, problems: list[GeoProblem]) -> Ring | None:
    if not isinstance(raw, list) or len(raw) < 4:
        problems.append(GeoProblem(where, "a linear ring needs at least 4 positions"))
        return None
    pts: list[Point] = []
    for j, pos in enumerate(raw):
        ok = (
            isinstance(pos, list)
            and len(pos) >= 2
            and all(isinstance(c, int | float) and not isinstance(c, bool) for c in pos[:2])
        )
        if not ok or not (-180 <= pos[0] <= 180 and -90 <= pos[1] <= 90):
            problems.append(GeoProblem(f"{where}[{j}]", f"not a [lon, lat] position: {pos!r}"))
            return None
        pts.append((float(pos[0]), float(pos[1])))
    if pts[0] != pts[-1]:
        problems.append(GeoProblem(where, "ring is not closed (first and last positions differ)"))
        return None
    return tuple(pts)


def _polygon(raw: Any, where: str, problems: list[GeoProblem]) -> Polygon | None:
    if not isinstance(raw, list) or not raw:
        problems.append(GeoProblem(where, "a polygon is a non-empty list of rings"))
        return None
    rings = [_ring(r, f"{where}[{k}]", problems) for k, r in enumerate(raw)]
    return None if any(r is None for r in rings) else tuple(r for r in rings if r is not None)


def parse_boundaries(raw: Any, origin: str = "$") -> tuple[list[Boundary], list[GeoProblem]]:
    """Boundaries of a GeoJSON FeatureCollection whose features name their grid in
    ``properties.grid``; every problem is reported with its JSON path."""
    problems: list[GeoProblem] = []
    if not isinstance(raw, dict) or raw.get("type") != "FeatureCollection":
        return [], [GeoProblem(origin, "expected a GeoJSON FeatureCollection")]
    features = raw.get("features")
    if not isinstance(features, list):
        return [], [GeoProblem(f"{origin}.features", "expected a list of features")]
    out: list[Boundary] = []
    for i, feat in enumerate(features):
        where = f"{origin}.features[{i}]"
        props = feat.get("properties") if isinstance(feat, dict) else None
        grid = props.get("grid") if isinstance(props, dict) else None
        if not isinstance(grid, str) or not grid:
            problems.append(GeoProblem(where, "properties.grid (the grid id) is missing"))
            continue
        where = f"{where} ({grid})"
        geom = feat.get("geometry")
        kind = geom.get("type") if isinstance(geom, dict) else None
        coords = geom.get("coordinates") if isinstance(geom, dict) else None
        if kind == "Polygon":
            poly = _polygon(coords, f"{where}.geometry.coordinates", problems)
            polys: tuple[Polygon, ...] | None = None if poly is None else (poly,)
        elif kind == "MultiPolygon" and isinstance(coords, list) and coords:
            parts = [
                _polygon(c, f"{where}.geometry.coordinates[{k}]", problems) for k, c in enumerate(coords)
            ]
            polys = None if any(p is None for p in parts) else tuple(p for p in parts if p is not None)
        else:
            problems.append(GeoProblem(where, f"geometry must be a Polygon or MultiPolygon, not {kind!r}"))
            continue
        if polys is not None:
            out.append(Boundary(grid, polys, where))
    return out, problems


def load_boundaries(path: Path) -> tuple[list[Boundary], list[GeoProblem]]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return [], [GeoProblem(str(path), f"cannot read: {exc.strerror}")]
    except json.JSONDecodeError as exc:
        return [], [GeoProblem(f"{path}:{exc.lineno}:{exc.colno}", f"not JSON: {exc.msg}")]
    return parse_boundaries(raw, f"{path.name}:$")
