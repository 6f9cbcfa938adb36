"""``airgrid backtest`` over Beijing-format CSVs: units, the hour label, the hourly AQI CSV, episodes
per station and month, and one-line errors."""

from __future__ import annotations

import csv
from datetime import timedelta
from pathlib import Path

import pytest

from airgrid.cli import run as airgrid
from airgrid.config.settings import DATA_DIR
from airgrid.domain import aqi
from airgrid.domain.backtest import Row, read_rows, run
from airgrid.domain.detection.compiled import compile_rules
from airgrid.domain.rules import RuleCatalogue, load_rules, parse_rules
from airgrid.models.alarms import AlarmEvent
from tests.helpers import REPO

HEADER = (
    '"No","year","month","day","hour","PM2.5","PM10","SO2","NO2","CO","O3",'
    '"TEMP","PRES","DEWP","RAIN","wd","WSPM","station"'
)
# real hourly data, December 2016 and January 2017, in the repository (tests/data/README.md)
BEIJING = REPO / "tests" / "data" / "beijing"


def write_csv(path: Path, station: str, pm25: list[str], day: int = 1, month: int = 12) -> Path:
    lines = [HEADER]
    for i, v in enumerate(pm25):
        d, h = day + i // 24, i % 24
        pm10 = "NA" if v == "NA" else str(float(v) * 1.5)
        lines.append(f'{i + 1},2016,{month},{d},{h},{v},{pm10},8,40,1200,30,0,1020,-10,0,"N",2,"{station}"')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_rows_take_the_label_as_the_start_of_the_hour_and_co_in_mg(tmp_path: Path) -> None:
    (row,) = read_rows(write_csv(tmp_path / "a.csv", "Dongsi", ["80"]))
    assert row.end.isoformat() == "2016-12-01T01:00:00+08:00"  # label 0 = 00:00-01:00 local
    assert row.values == {"pm25": 80.0, "pm10": 120.0, "so2": 8.0, "no2": 40.0, "co": 1.2, "o3": 30.0}
    (end,) = read_rows(tmp_path / "a.csv", label="end")
    assert end.end.isoformat() == "2016-12-01T00:00:00+08:00"


def test_backtest_prints_episodes_per_station_and_month_and_writes_hourly_aqi(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values = ["30"] * 24 + ["160"] * 8 + ["20"] * 16  # an 8-hour episode on the second day
    a = write_csv(tmp_path / "a.csv", "Dongsi", values)
    b = write_csv(tmp_path / "b.csv", "Huairou", ["20"] * 47 + ["NA"])
    out = tmp_path / "aqi.csv"
    assert airgrid(["backtest", str(a), str(b), "--hourly-aqi-out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    dongsi = next(line for line in text.splitlines() if line.startswith("Dongsi"))
    assert dongsi.split()[:4] == ["Dongsi", "2016-12", "48", "4"]
    assert "pm25_1h_exceedance 1" in dongsi and "pm25_1h_severe 1" in dongsi
    assert "episodes opened per rule:" in text and "pm25_sustained                 1" in text
    assert next(line for line in text.splitlines() if line.startswith("Huairou")).split()[3] == "0"
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert list(rows[0])[:5] == ["station", "time", "aqi", "category", "primary"]
    assert {"iaqi_pm25_24h", "iaqi_o3_8h", "iaqi_pm25_1h"} <= set(rows[0])
    assert len(rows) == 96  # one row per reading (Huairou's last hour lacks PM only)
    hour30 = next(r for r in rows if r["station"] == "Dongsi" and r["time"] == "2016-12-02T06:00:00+08:00")
    pm25_24h = (30 * 17 + 160 * 7) / 24  # 2012: real-time PM from the sliding 24 h average
    exact = aqi.hourly_aqi(
        {"so2": 8, "no2": 40, "co": 1.2, "o3": 30},
        aqi.Standard.HJ633_2012,
        pm25_24h=pm25_24h,
        pm10_24h=pm25_24h * 1.5,
        o3_8h=30,
    )
    assert int(hour30["aqi"]) == exact.aqi and hour30["category"] == exact.category.en  # type: ignore[union-attr]
    assert hour30["primary"] == " ".join(exact.primary) and hour30["iaqi_pm25_1h"] == ""
    first = rows[0]
    assert first["aqi"] == "" and first["iaqi_so2_1h"] != ""  # no 24 h PM yet: AQI not published


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["nothing.csv"], "nothing.csv: No such file"),
        (["--rules", "nope.toml", "x.csv"], "nope.toml"),
    ],
)
def test_backtest_errors_are_one_line(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert airgrid(["backtest", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err


def test_not_a_beijing_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert airgrid(["backtest", str(bad)]) == 2
    assert "not a Beijing Multi-Site CSV" in capsys.readouterr().err


def test_real_beijing_january_2017(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = BEIJING / "PRSA_Data_Dongsi_20161201-20170131.csv"
    lines = src.read_text(encoding="utf-8").splitlines()
    month = [lines[0], *(line for line in lines[1:] if ",2017,1," in line)]
    part = tmp_path / "dongsi-2017-01.csv"
    part.write_text("\n".join(month) + "\n", encoding="utf-8")
    assert airgrid(["backtest", str(part), "--quiet"]) == 0
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith("Dongsi"))
    assert row.split()[1] == "2017-01" and int(row.split()[2]) > 700 and int(row.split()[3]) > 0


def _beijing_rows() -> list[Row]:
    files = sorted(BEIJING.glob("PRSA_Data_*.csv"))
    assert len(files) == 3, files
    return [row for f in files for row in read_rows(f)]


def _clean_days(rows: list[Row], days: int = 3) -> list[Row]:
    """Clean air after the data ends (values vary, so no flat line), to see every episode clear."""
    last = max(r.end for r in rows)
    return [
        Row(
            station,
            last + timedelta(hours=h),
            {"pm25": 8.0 + h % 5, "pm10": 20.0 + h % 7, "no2": 20.0 + h % 3},
        )
        for station in sorted({r.station for r in rows})
        for h in range(1, 24 * days + 1)
    ]


def test_real_winter_alarm_events_per_episode() -> None:
    """Issue 15: replaying real hourly data flooded subscribers with ~30 events per episode
    (every hourly evaluation of an open episode was an `updated`). Under the shipped contract
    two winter months of three Beijing stations give at most 4 events per episode, and the
    episodes open and clear exactly as when every evaluation was sent."""
    rows = _beijing_rows()
    rows += _clean_days(rows)
    rs = compile_rules(load_rules(DATA_DIR / "rules.toml"))
    shipped = run(rows, rs, keep_events=True)
    flood = run(rows, compile_rules(_every_evaluation()), keep_events=True)
    opened = shipped.kinds["opened"]
    assert opened > 300  # a heavy winter: hundreds of episodes
    assert sum(shipped.kinds.values()) / opened <= 4.0
    assert sum(flood.kinds.values()) / opened > 20  # the flood the contract replaced
    assert not shipped.still_open  # clean air clears every episode opened

    def lifecycle(events: list[AlarmEvent]) -> list[tuple[str, str, object, object]]:
        return [(e.alarm_id, e.kind, e.window_start, e.value) for e in events if e.kind != "updated"]

    assert lifecycle(shipped.events) == lifecycle(flood.events)
    assert all(e.change is not None for e in shipped.events if e.kind == "updated")


def _every_evaluation() -> RuleCatalogue:
    """The shipped catalogue with a heartbeat at every evaluation: the old flood of updates."""
    shipped = load_rules(DATA_DIR / "rules.toml")
    return parse_rules(
        shipped.model_dump(mode="json", exclude_defaults=False)
        | {"updates": {"worse_factor": 1.0, "heartbeat_hours": 0.0003}}
    )


def test_backtest_prints_events_per_episode(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(f) for f in sorted(BEIJING.glob("PRSA_Data_*.csv"))]
    assert airgrid(["backtest", *files, "--quiet"]) == 0
    summary = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("alarm events:"))
    assert " per episode): opened " in summary and "still open at the end of the data: " in summary
    per = float(summary.split("(")[1].split()[0])
    assert 1.0 < per <= 4.0
