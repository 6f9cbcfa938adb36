"""Unit tests of the grid directory (airgrid.domain.directory): the shipped file and the checks."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from airgrid.config.settings import DATA_DIR
from airgrid.domain.directory import Directory, DirectoryError, Problem, check, parse_file
from airgrid.models.grid import GridDirectoryFile
from airgrid.models.tasks import Lineage

SHIPPED = DATA_DIR / "grids.json"


@pytest.fixture(scope="module")
def shipped() -> Directory:
    return Directory.load(SHIPPED)


def small() -> dict[str, Any]:
    """A valid two-branch directory to break one way at a time."""
    return {
        "schema_version": 1,
        "city": "Test",
        "grids": [
            {"id": "A", "name": "district A", "level": 1},
            {"id": "A1", "name": "street A1", "level": 2, "parent": "A"},
            {"id": "A1a", "name": "community A1a", "level": 3, "parent": "A1", "key": True},
            {"id": "A1b", "name": "community A1b", "level": 3, "parent": "A1"},
        ],
        "workers": [
            {"id": "W1", "name": "w", "grid": "A1a"},
            {"id": "R1", "name": "r", "grid": "A1", "role": "reviewer"},
        ],
        "stations": [
            {"id": "S1", "name": "s", "lon": 87.6, "lat": 43.8, "grid": "A1a"},
            {"id": "S2", "name": "s", "lon": 87.7, "lat": 43.9, "grid": "A1b"},
        ],
    }


def problems_of(raw: dict[str, Any]) -> list[str]:
    return [str(p) for p in check(GridDirectoryFile.model_validate(raw))]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "grids.json"
    path.write_text(text, encoding="utf-8")
    return path


# --- the shipped directory ----------------------------------------------------------------------


def test_shipped_file_has_no_problems() -> None:
    doc, problems = parse_file(SHIPPED)
    assert doc is not None and problems == []


def test_shipped_file_counts(shipped: Directory) -> None:
    levels = Counter(g.level for g in shipped.grids.values())
    assert levels == {1: 8, 2: 118, 3: 998}
    assert sum(g.key for g in shipped.grids.values()) == 26
    assert 1_900 <= len(shipped.workers) <= 2_100
    assert len(shipped.grids) == len(shipped.doc.grids)  # ids are unique
    assert len(shipped.stations) > 0


def test_every_shipped_station_has_a_full_chain(shipped: Directory) -> None:
    for st in shipped.stations.values():
        lineage = shipped.lineage(st.id)
        assert lineage is not None
        assert [shipped.level_of_grid(g) for g in (lineage.l3, lineage.l2, lineage.l1)] == [3, 2, 1]
        assert shipped.grids[lineage.l3].parent == lineage.l2
        assert shipped.grids[lineage.l2].parent == lineage.l1
        assert lineage.key_grid == shipped.grids[lineage.l3].key


def test_lineage_of_a_shipped_station(shipped: Directory) -> None:
    assert shipped.lineage("ST001") == Lineage(l3="L3-010102", l2="L2-0101", l1="L1-01", key_grid=False)
    assert shipped.lineage("no-such-station") is None
    assert shipped.level_of_grid("L2-0101") == 2 and shipped.level_of_grid("nope") is None


def test_shipped_workers_are_attached_to_existing_grids(shipped: Directory) -> None:
    assert all(w.grid in shipped.grids for w in shipped.workers.values())
    reviewers = {shipped.grids[w.grid].level for w in shipped.workers.values() if w.role == "reviewer"}
    assert 3 not in reviewers  # reviewers sit above level 3


# --- lineage on a small directory ---------------------------------------------------------------


def test_lineage_of_small_directory(tmp_path: Path) -> None:
    d = Directory.load(write(tmp_path, json.dumps(small())))
    assert d.city == "Test"
    assert d.lineage("S1") == Lineage(l3="A1a", l2="A1", l1="A", key_grid=True)
    assert d.lineage("S2") == Lineage(l3="A1b", l2="A1", l1="A", key_grid=False)
    assert d.lineage_of_grid("A1b") == d.lineage("S2")
    assert d.workers["R1"].role == "reviewer"


def test_small_directory_is_clean() -> None:
    assert problems_of(small()) == []


# --- check: one problem each, with its JSON path -------------------------------------------------


def test_duplicate_ids() -> None:
    raw = small()
    raw["grids"].append({"id": "A1b", "name": "again", "level": 3, "parent": "A1"})
    raw["workers"].append({"id": "W1", "name": "again", "grid": "A1a"})
    raw["stations"].append({"id": "S1", "name": "again", "lon": 0, "lat": 0, "grid": "A1a"})
    assert problems_of(raw) == [
        "$.grids[4] (A1b): duplicate grid id, first at $.grids[3]",
        "$.workers[2] (W1): duplicate worker id, first at $.workers[0]",
        "$.stations[2] (S1): duplicate station id, first at $.stations[0]",
    ]


def test_missing_parent() -> None:
    raw = small()
    raw["grids"][1]["parent"] = "Z"
    raw["grids"].append({"id": "orphan", "name": "o", "level": 2})
    assert problems_of(raw) == [
        "$.grids[1] (A1): parent 'Z' is not a grid",
        "$.grids[4] (orphan): parent None is not a grid",
    ]


def test_parent_at_the_wrong_level() -> None:
    raw = small()
    raw["grids"][3]["parent"] = "A"  # level 3 under a level-1 grid
    raw["grids"].append({"id": "B", "name": "b", "level": 1, "parent": "A"})
    assert problems_of(raw) == [
        "$.grids[3] (A1b): parent A is level 1, expected 2",
        "$.grids[4] (B): a level-1 grid has no parent",
    ]


def test_worker_on_a_missing_grid() -> None:
    raw = small()
    raw["workers"][1]["grid"] = "gone"
    assert problems_of(raw) == ["$.workers[1] (R1): grid 'gone' does not exist"]


def test_station_in_no_grid_or_in_a_level_2_grid_or_a_missing_one() -> None:
    raw = small()
    del raw["stations"][0]["grid"]
    raw["stations"][1]["grid"] = "A1"
    raw["stations"].append({"id": "S3", "name": "s", "lon": 0, "lat": 0, "grid": "ghost"})
    assert problems_of(raw) == [
        "$.stations[0] (S1): station is in no level-3 grid",
        "$.stations[1] (S2): grid A1 is level 2, expected 3",
        "$.stations[2] (S3): grid 'ghost' does not exist",
    ]


def test_every_problem_is_reported_not_only_the_first() -> None:
    raw = small()
    raw["grids"][2]["parent"] = "nope"
    raw["workers"][0]["grid"] = "nope"
    del raw["stations"][1]["grid"]
    problems = problems_of(raw)
    assert len(problems) == 3
    assert [p.split(" ")[0] for p in problems] == ["$.grids[2]", "$.workers[0]", "$.stations[1]"]


def test_problem_str() -> None:
    assert str(Problem("$.grids[0] (A)", "bad")) == "$.grids[0] (A): bad"


# --- parse_file and load --------------------------------------------------------------------------


def test_parse_file_on_non_json_reports_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '{\n  "city": "x",\n  oops\n}\n')
    doc, problems = parse_file(path)
    assert doc is None and len(problems) == 1
    assert problems[0].where == f"{path}:3:3"
    assert problems[0].what.startswith("not JSON: ")


def test_parse_file_missing(tmp_path: Path) -> None:
    doc, problems = parse_file(tmp_path / "none.json")
    assert doc is None and problems[0].what.startswith("cannot read")
    assert problems[0].where.endswith("none.json")


def test_parse_file_schema_errors_have_json_paths(tmp_path: Path) -> None:
    raw = small()
    raw["grids"][1]["level"] = 4
    raw["stations"][0]["lat"] = 95
    doc, problems = parse_file(write(tmp_path, json.dumps(raw)))
    assert doc is None
    assert [p.where for p in problems] == ["$.grids[1] (A1).level", "$.stations[0] (S1).lat"]


def test_schema_errors_and_consistency_problems_are_all_reported(tmp_path: Path) -> None:
    """Issue 15: `grids check` stopped at the schema errors (the entries that fit were never
    checked) and wrote their paths in another style (`$.grids.1.level`)."""
    raw = small()
    raw["grids"][2]["level"] = 7  # breaks the schema
    del raw["grids"][3]["name"]  # so does this
    raw["workers"][0]["grid"] = "A1a"  # names a grid that breaks the schema: no second problem
    raw["workers"][1]["grid"] = "gone"  # a consistency problem among entries that fit
    raw["stations"][0]["lon"] = 500  # schema
    raw["stations"].append({"id": "S1", "name": "again", "lon": 87.6, "lat": 43.8, "grid": "A1b"})
    doc, problems = parse_file(write(tmp_path, json.dumps(raw)))
    assert doc is None
    assert [str(p) for p in problems] == [
        "$.grids[2] (A1a).level: Input should be 1, 2 or 3",
        "$.grids[3] (A1b).name: Field required",
        "$.stations[0] (S1).lon: Input should be less than or equal to 180",
        "$.workers[1] (R1): grid 'gone' does not exist",
    ]
    raw["stations"][0]["lon"] = 87.6  # now both S1 fit: the duplicate is found, at its place
    _, problems = parse_file(write(tmp_path, json.dumps(raw)))
    assert "$.stations[2] (S1): duplicate station id, first at $.stations[0]" in [str(p) for p in problems]


def test_load_raises_with_every_problem(tmp_path: Path) -> None:
    raw = small()
    raw["workers"][0]["grid"] = "gone"
    raw["stations"][0]["grid"] = "A1"
    path = write(tmp_path, json.dumps(raw))
    with pytest.raises(DirectoryError) as err:
        Directory.load(path)
    message = str(err.value)
    assert f"grid directory {path} has 2 problem(s)" in message
    assert "$.workers[0] (W1): grid 'gone' does not exist" in message
    assert "$.stations[0] (S1): grid A1 is level 2, expected 3" in message


def test_load_raises_on_non_json(tmp_path: Path) -> None:
    with pytest.raises(DirectoryError, match=r"1 problem\(s\).*:1:1: not JSON"):
        Directory.load(write(tmp_path, "not json"))
