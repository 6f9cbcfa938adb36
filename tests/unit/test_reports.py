"""Reports on a projection filled through the real SqlProjection.write with a deterministic story
(tests/sql_support.week_story): every figure checked by hand, every format, every bad input."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from airgrid.ops.cli_report import cmd_report
from airgrid.reports.compute import grade, score
from airgrid.reports.periods import PeriodError, parse_period
from airgrid.sinks.sql import SqlProjection, make_engine
from tests.sql_support import letters, week_story

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def projection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'airgrid.db'}"
    engine = make_engine(url)
    sink = SqlProjection(engine, zone=SHANGHAI)
    sink.setup()
    s = week_story()
    sink.write(s.alarms, s.events, s.feedback, letters())
    engine.dispose()
    for k in [k for k in __import__("os").environ if k.startswith("AIRGRID_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("AIRGRID_DATABASE_URL", url)
    monkeypatch.setenv("AIRGRID_TIMEZONE", "Asia/Shanghai")
    return url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cmd_report(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def rows(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, dict[str, str]]:
    code, out, err = run(capsys, *argv, "--format", "csv")
    assert code == 0, err
    return {r["grid"]: r for r in csv.DictReader(io.StringIO(out))}


def test_periods_parse_in_local_time() -> None:
    w = parse_period("weekly", "2026-W47", SHANGHAI)
    assert (str(w.first_day), str(w.end_day)) == ("2026-11-16", "2026-11-23")
    assert w.start.isoformat() == "2026-11-15T16:00:00+00:00"
    assert str(parse_period("monthly", "2026-12", SHANGHAI).end_day) == "2027-01-01"
    q = parse_period("quarterly", "2026-Q4", SHANGHAI)
    assert (str(q.first_day), str(q.end_day)) == ("2026-10-01", "2027-01-01")
    assert str(parse_period("assessment", "2026", SHANGHAI).end_day) == "2027-01-01"
    for kind, bad in (
        ("weekly", "2026-W54"),
        ("weekly", "2026-11"),
        ("monthly", "2026-13"),
        ("quarterly", "2026-Q5"),
    ):
        with pytest.raises(PeriodError):
            parse_period(kind, bad, SHANGHAI)


def test_weekly_per_level3_grid(projection: str, capsys: pytest.CaptureFixture[str]) -> None:
    r = rows(capsys, "weekly", "--period", "2026-W47")
    assert set(r) == {"L3-010102", "L3-010109", "L3-010505"}
    a, b, c = r["L3-010102"], r["L3-010109"], r["L3-010505"]
    assert (a["tasks"], a["patrols"], a["feedback"], a["on_time"], a["closed"], a["open_at_end"]) == (
        "2", "3", "3", "2", "2", "0"
    )  # fmt: skip
    assert (b["tasks"], b["on_time"], b["reminders"], b["escalations"], b["open_at_end"]) == (
        "2",
        "0",
        "2",
        "3",
        "1",
    )
    assert (c["tasks"], c["open_at_end"], c["on_time_rate"]) == ("1", "1", "0.0")
    nxt = rows(capsys, "weekly", "--period", "2026-W48")
    assert nxt["L3-010505"]["tasks"] == "1" and "L3-010102" not in nxt


def test_monthly_per_level2_grid(projection: str, capsys: pytest.CaptureFixture[str]) -> None:
    r = rows(capsys, "monthly", "--period", "2026-11")
    m = r["L2-0101"]
    assert (m["dispatched"], m["critical"], m["major"], m["escalated_to_l2"], m["escalated_to_l1"]) == (
        "4", "1", "3", "2", "1"
    )  # fmt: skip
    assert (m["closed"], m["on_time_rate"], m["median_feedback_h"], m["name"]) == (
        "3",
        "0.5",
        "5.0",
        "Tianshan street 1",
    )
    assert r["L2-0105"]["dispatched"] == "2"
    # scoped to a level-1 grid: all its level-2 grids, with zeros where nothing happened
    scoped = rows(capsys, "monthly", "--period", "2026-11", "--grid", "L1-01")
    assert scoped["L2-0102"]["dispatched"] == "0" and scoped["L2-0101"]["dispatched"] == "4"


def test_quarterly_bulletin_with_data_quality(projection: str, capsys: pytest.CaptureFixture[str]) -> None:
    q = rows(capsys, "quarterly", "--period", "2026-Q4")["L1-01"]
    assert (q["tasks"], q["closed"], q["closure_rate"], q["patrols"], q["escalated"], q["sources_found"]) == (
        "6", "3", "0.5", "4", "2", "2"
    )  # fmt: skip
    code, out, _ = run(capsys, "quarterly", "--period", "2026-Q4")
    assert code == 0 and re.search(r"readings.dlq\s+not_json\s+3", out) and re.search(r"wrong_grid\s+1", out)


def test_assessment_score_formula(projection: str, capsys: pytest.CaptureFixture[str]) -> None:
    r = rows(capsys, "assessment", "--period", "2026")
    assert r["L3-010102"]["score"] == "92.5" and r["L3-010102"]["grade"] == "A"  # 40+30+15+7.5
    assert r["L3-010109"]["score"] == "22.5"  # 0 + 15 (1 of 2 closed) + 0 + 7.5
    assert r["L3-010505"]["repeat_alarms"] == "1" and r["L3-010505"]["score"] == "22.5"
    assert r["L3-010102"]["rank"] == "1"
    assert score(0, 0, 0, 0, 0) is None and score(4, 4, 0, 0, 4) == 100.0
    assert [grade(v) for v in (95, 80, 60, 10, None)] == ["A", "B", "C", "D", "-"]
    assert rows(capsys, "assessment", "--period", "2025") == {}


def test_formats_and_html_charts(projection: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "weekly", "--period", "2026-W47", "--format", "md")
    assert code == 0 and out.startswith("# Weekly patrol report") and "| L3-010102 |" in out
    code, out, _ = run(capsys, "weekly", "--period", "2026-W47")
    assert code == 0 and "community 0101-2" in out and "100%" in out
    page = tmp_path / "w.html"
    code, _, err = run(capsys, "assessment", "--period", "2026", "--format", "html", "--out", str(page))
    assert code == 0 and "wrote" in err
    html = page.read_text()
    assert html.count("<svg") == 2 and html.count('class="bar"') == 6  # two charts x three grids
    assert "<script" not in html and "92.5" in html
    assert not re.search(r"(src|href)=\"https?:", html)  # nothing fetched from the network


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["weekly", "--period", "2026-47"], 2, "--period '2026-47' is not a week"),
        (["monthly", "--period", "2026-W47"], 2, "is not a month"),
        (["weekly", "--period", "2026-W47", "--grid", "L9-99"], 2, "no grid 'L9-99'"),
        (["monthly", "--period", "2026-11", "--grid", "L3-010102"], 2, "is a level-3 grid"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    projection: str, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, message: str
) -> None:
    got, out, err = run(capsys, *argv)
    assert got == code and out == ""
    assert err.count("\n") == 1 and message in err and err.startswith("airgrid: ")


def test_unreachable_database_is_exit_1(
    projection: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AIRGRID_DATABASE_URL", "postgresql+psycopg://airgrid:secret@127.0.0.1:1/airgrid")
    code, _, err = run(capsys, "weekly", "--period", "2026-W47")
    assert code == 1 and "cannot reach the projection database" in err and "secret" not in err
    assert err.count("\n") == 1
    monkeypatch.setenv("AIRGRID_DATABASE_URL", f"sqlite:///{tmp_path / 'missing.db'}")
    code, _, err = run(capsys, "weekly", "--period", "2026-W47")
    assert code == 1 and "no projection database at" in err
