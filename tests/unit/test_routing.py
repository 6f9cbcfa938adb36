"""Routing: point-in-polygon on level-3 boundaries, the directory checks that use them, and the
neighbours co-notified at dispatch."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airgrid.cli import main as cli_main
from airgrid.config.settings import DATA_DIR
from airgrid.domain.directory import Directory, DirectoryError, parse_directory
from airgrid.domain.geo import Boundary, Locator, distance_km, parse_boundaries, ring_contains
from airgrid.domain.tasks import dispatch
from tests.unit.test_tasks_owner import T0, alarm

SQUARE = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0), (0.0, 0.0))
# a U shape: the notch (0.4..0.6 x 0.3..1) is outside
U_SHAPE = (
    (0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.6, 1.0), (0.6, 0.3),
    (0.4, 0.3), (0.4, 1.0), (0.0, 1.0), (0.0, 0.0),
)  # fmt: skip


def test_ray_casting_square_and_concave() -> None:
    assert ring_contains(SQUARE, 0.5, 0.5)
    assert not ring_contains(SQUARE, 1.5, 0.5)
    assert not ring_contains(SQUARE, 0.5, -0.1)
    assert ring_contains(U_SHAPE, 0.2, 0.8) and ring_contains(U_SHAPE, 0.8, 0.8)
    assert not ring_contains(U_SHAPE, 0.5, 0.8)  # in the notch
    assert ring_contains(U_SHAPE, 0.5, 0.1)


def test_holes_and_multipolygons() -> None:
    hole = ((0.4, 0.4), (0.6, 0.4), (0.6, 0.6), (0.4, 0.6), (0.4, 0.4))
    far = tuple((x + 5, y) for x, y in SQUARE)
    b = Boundary("G", ((SQUARE, hole), (far,)))
    assert b.contains(0.2, 0.2) and not b.contains(0.5, 0.5) and b.contains(5.5, 0.5)
    assert Locator([b]).locate(0.5, 0.5) == []


@given(st.floats(-0.99, 1.99), st.floats(-0.99, 1.99))
def test_ray_casting_matches_the_box_test(x: float, y: float) -> None:
    if min(abs(x), abs(x - 1), abs(y), abs(y - 1)) < 1e-9:
        return  # on an edge: either answer is fine
    assert ring_contains(SQUARE, x, y) == (0 < x < 1 and 0 < y < 1)


def test_distance_km() -> None:
    assert distance_km((87.6, 43.8), (87.6, 43.8)) == 0
    one_degree_lat = distance_km((87.6, 43.0), (87.6, 44.0))
    assert math.isclose(one_degree_lat, 111.2, rel_tol=0.01)


def feature(grid: Any, coords: Any, kind: str = "Polygon") -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": {"grid": grid},
        "geometry": {"type": kind, "coordinates": coords},
    }


def test_parse_boundaries_reports_each_problem_with_its_place() -> None:
    ring = [list(p) for p in SQUARE]
    raw = {
        "type": "FeatureCollection",
        "features": [
            feature("A", [ring]),
            feature("B", [ring[:3]]),
            feature("C", [[*ring[:-1], [0.0, 0.5]]]),
            feature("D", [[[0, 0], [1, 0], ["x", 1], [0, 0]]]),
            {"type": "Feature", "properties": {}, "geometry": None},
            feature("E", [1, 2], kind="Point"),
            feature("F", [[ring], [ring]], kind="MultiPolygon"),
        ],
    }
    found, problems = parse_boundaries(raw, "b.geojson:$")
    assert [b.grid_id for b in found] == ["A", "F"]
    assert [str(p) for p in problems] == [
        "b.geojson:$.features[1] (B).geometry.coordinates[0]: a linear ring needs at least 4 positions",
        "b.geojson:$.features[2] (C).geometry.coordinates[0]: ring is not closed (first and last "
        "positions differ)",
        "b.geojson:$.features[3] (D).geometry.coordinates[0][2]: not a [lon, lat] position: ['x', 1]",
        "b.geojson:$.features[4]: properties.grid (the grid id) is missing",
        "b.geojson:$.features[5] (E): geometry must be a Polygon or MultiPolygon, not 'Point'",
    ]
    assert parse_boundaries([], "x")[1][0].what == "expected a GeoJSON FeatureCollection"


def city(tmp_path: Path, stations: list[dict[str, Any]], features: list[dict[str, Any]]) -> Path:
    """Two level-3 grids side by side (A1a: x 0..1, A1b: x 1..2) under A1 under A."""
    doc = {
        "schema_version": 1,
        "city": "Test",
        "boundaries": "b.geojson",
        "grids": [
            {"id": "A", "name": "a", "level": 1},
            {"id": "A1", "name": "a1", "level": 2, "parent": "A"},
            {"id": "A1a", "name": "a1a", "level": 3, "parent": "A1", "key": True},
            {"id": "A1b", "name": "a1b", "level": 3, "parent": "A1"},
        ],
        "workers": [{"id": "W1", "name": "w", "grid": "A1a"}],
        "stations": stations,
    }
    (tmp_path / "b.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    path = tmp_path / "grids.json"
    path.write_text(json.dumps(doc))
    return path


def box(x0: float, x1: float) -> list[list[list[float]]]:
    return [[[x0, 0], [x1, 0], [x1, 1], [x0, 1], [x0, 0]]]


def test_stations_without_a_grid_are_located_by_their_boundary(tmp_path: Path) -> None:
    path = city(
        tmp_path,
        [
            {"id": "S1", "name": "s", "lon": 0.5, "lat": 0.5},
            {"id": "S2", "name": "s", "lon": 1.5, "lat": 0.5},
        ],
        [feature("A1a", box(0, 1)), feature("A1b", box(1, 2))],
    )
    d = Directory.load(path)
    lineage = d.lineage("S1")
    assert lineage is not None and (lineage.l3, lineage.l2, lineage.l1, lineage.key_grid) == (
        "A1a",
        "A1",
        "A",
        True,
    )
    assert d.lineage("S2") is not None and d.lineage("S2").l3 == "A1b"  # type: ignore[union-attr]
    assert d.neighbours("S1", 200) == ("A1b",)  # centres 111 km apart at the equator
    assert d.neighbours("S1", 50) == ()


def test_check_finds_overlaps_gaps_bad_boundaries_and_disagreements(tmp_path: Path) -> None:
    path = city(
        tmp_path,
        [
            {"id": "S1", "name": "s", "lon": 0.9, "lat": 0.5},  # in A1a and in the overlapping A1b
            {"id": "S2", "name": "s", "lon": 5.0, "lat": 0.5},  # in no boundary
            {"id": "S3", "name": "s", "lon": 0.1, "lat": 0.5, "grid": "A1b"},  # says A1b, lies in A1a
            {"id": "S4", "name": "s", "lon": 0.1, "lat": 0.5, "grid": "A1a"},  # fine
        ],
        [
            feature("A1a", box(0, 1)),
            feature("A1b", box(0.8, 2)),
            feature("A1", box(3, 4)),
            feature("ghost", box(6, 7)),
            feature("A1a", box(8, 9)),
        ],
    )
    doc, boundaries, problems = parse_directory(path)
    assert doc is not None and len(boundaries) == 5
    assert [str(p) for p in problems] == [
        "b.geojson:$.features[2] (A1): grid A1 is level 2, expected 3",
        "b.geojson:$.features[3] (ghost): grid 'ghost' does not exist",
        "b.geojson:$.features[4] (A1a): second boundary of grid A1a, first at b.geojson:$.features[0] (A1a)",
        "$.stations[0] (S1): station at (0.9, 0.5) lies in 2 level-3 grids (A1a, A1b): overlapping "
        "boundaries",
        "$.stations[1] (S2): station at (5.0, 0.5) is in no level-3 grid: no explicit grid and no "
        "boundary contains it",
        "$.stations[2] (S3): explicit grid A1b but the station at (0.1, 0.5) lies in the boundary of A1a",
    ]
    with pytest.raises(DirectoryError, match="6 problem"):
        Directory.load(path)


def test_missing_boundaries_file_is_a_problem(tmp_path: Path) -> None:
    path = city(tmp_path, [{"id": "S1", "name": "s", "lon": 0.5, "lat": 0.5, "grid": "A1a"}], [])
    (tmp_path / "b.geojson").unlink()
    _, _, problems = parse_directory(path)
    assert [p.what for p in problems] == ["cannot read: No such file or directory"]


def test_grids_check_cli_reports_places_and_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as ok:
        cli_main(["grids", "check", str(DATA_DIR / "grids.json")])
    assert ok.value.code == 0
    out = capsys.readouterr().out
    assert "998 level-3 grids (26 key), 1990 workers, 48 stations (24 located by boundary)" in out
    assert "998 level-3 boundaries" in out
    bad = city(tmp_path, [{"id": "S2", "name": "s", "lon": 5.0, "lat": 0.5}], [feature("A1a", box(0, 1))])
    with pytest.raises(SystemExit) as failed:
        cli_main(["grids", "check", str(bad)])
    assert failed.value.code == 1
    captured = capsys.readouterr()
    assert "$.stations[0] (S2): station at (5.0, 0.5) is in no level-3 grid" in captured.out
    assert "1 problem(s)" in captured.err


def test_shipped_city_boundaries_tile_the_level_3_grids() -> None:
    doc, boundaries, problems = parse_directory(DATA_DIR / "grids.json")
    assert problems == [] and doc is not None
    assert sorted(b.grid_id for b in boundaries) == sorted(g.id for g in doc.grids if g.level == 3)
    d = Directory(doc, tuple(boundaries))
    located = [s for s in doc.stations if s.grid is None]
    assert len(located) == 24
    for s in doc.stations:
        assert d.locator.locate(s.lon, s.lat) == [d.lineage(s.id).l3]  # type: ignore[union-attr]


def test_dispatch_records_co_notified_grids_without_the_own_grid() -> None:
    d = Directory.load(DATA_DIR / "grids.json")
    lineage = d.lineage("ST001")
    assert lineage is not None
    near = d.neighbours("ST001", 2.0)
    assert near and lineage.l3 not in near
    from airgrid.domain.escalation import Policy

    task, event = dispatch(alarm(), lineage, Policy(name="p"), T0, co_notified=(lineage.l3, *near, near[0]))
    assert task.co_notified == near == event.co_notified
