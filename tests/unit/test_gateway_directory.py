"""The grid directory's HJ 212 identity of stations: MN (unique, validated) and access password."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from airgrid.cli import main as cli_main
from airgrid.config.settings import DATA_DIR
from airgrid.domain.directory import Directory, check, parse_file
from airgrid.models.grid import GridDirectoryFile, Station

SHIPPED = DATA_DIR / "grids.json"


def small(**station_extra: Any) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "city": "Test",
        "grids": [
            {"id": "A", "name": "district A", "level": 1},
            {"id": "A1", "name": "street A1", "level": 2, "parent": "A"},
            {"id": "A1a", "name": "community A1a", "level": 3, "parent": "A1"},
        ],
        "workers": [{"id": "W1", "name": "w", "grid": "A1a"}],
        "stations": [
            {"id": "S1", "name": "s", "lon": 87.6, "lat": 43.8, "grid": "A1a", "mn": "MN0001", "pw": "12345"},
            {"id": "S2", "name": "s", "lon": 87.7, "lat": 43.9, "grid": "A1a", **station_extra},
        ],
    }


def test_every_shipped_station_has_a_unique_mn_and_a_password() -> None:
    doc, problems = parse_file(SHIPPED)
    assert doc is not None and problems == []
    mns = [st.mn for st in doc.stations]
    assert all(mns) and len(set(mns)) == len(mns) == len(doc.stations)
    assert all(len(mn or "") == 24 for mn in mns)  # HJ 212-2017's MN length
    assert all(st.pw is not None for st in doc.stations)
    directory = Directory.load(SHIPPED)
    assert directory.by_mn["65010022A000000000000001"].id == "ST001"


def test_a_duplicate_mn_is_a_problem_with_its_place() -> None:
    problems = [str(p) for p in check(GridDirectoryFile.model_validate(small(mn="MN0001")))]
    assert problems == ["$.stations[1] (S2): duplicate MN MN0001, first at $.stations[0]"]
    assert check(GridDirectoryFile.model_validate(small(mn="MN0002"))) == []
    assert check(GridDirectoryFile.model_validate(small())) == []  # MN is optional


@pytest.mark.parametrize(
    ("extra", "where", "message"),
    [
        ({"mn": "MN;0002"}, "$.stations[1] (S2).mn", "should match pattern"),
        ({"mn": "M" * 25}, "$.stations[1] (S2).mn", "should match pattern"),
        ({"pw": "12;456"}, "$.stations[1] (S2).pw", "without spaces, ';', ',', '=' or '&'"),
        ({"pw": ""}, "$.stations[1] (S2).pw", "1 to 32 characters"),
    ],
)
def test_grids_check_names_a_bad_mn_or_password_without_showing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: dict[str, str], where: str, message: str
) -> None:
    path = tmp_path / "grids.json"
    path.write_text(json.dumps(small(**extra)))
    with pytest.raises(SystemExit) as done:
        cli_main(["grids", "check", str(path)])
    assert done.value.code == 1
    out = capsys.readouterr().out
    assert where in out and message in out
    if extra.get("pw"):
        assert extra["pw"] not in out  # the message names the rule, never the value


def test_the_password_never_shows_in_repr_logs_or_dumps(caplog: pytest.LogCaptureFixture) -> None:
    st = Station(id="S1", name="s", lon=1, lat=2, mn="MN0001", pw="s3cr3t")
    logging.getLogger("test").warning("station %s %r", st, st)
    text = repr(st) + str(st) + st.model_dump_json() + str(st.model_dump()) + caplog.text
    assert "s3cr3t" not in text
    assert st.pw is not None and st.pw.get_secret_value() == "s3cr3t"
