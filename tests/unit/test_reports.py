"""Reports on a projection filled through the real SqlProjection.write with a deterministic story
(tests/sql_support.week_story): every figure checked by hand, every format, every bad input."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from airgrid.cli import run as airgrid
from airgrid.config.settings import DATA_DIR
from airgrid.domain.directory import Directory
from airgrid.reports.build import build
from airgrid.reports.compute import grade, score
from airgrid.reports.periods import PeriodError, parse_period
from airgrid.reports.render import render
from airgrid.sinks.sql import SqlProjection, make_engine
from tests.sql_support import DAY, START, letters, week_story

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
    code = airgrid(["report", *argv])
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
    assert set(r) == {"L3-010102", "L3-010109", "L3-010505", "Total"}
    a, b, c = r["L3-010102"], r["L3-010109"], r["L3-010505"]
    got = (a["tasks"], a["site_visits"], a["feedback"], a["on_time"], a["closed_in_period"], a["open_at_end"])
    assert got == ("2", "3", "3", "2", "2", "0")
    # escalated: tasks, not escalation steps (b once, e twice: two tasks)
    assert (b["tasks"], b["on_time"], b["reminders"], b["escalated"], b["open_at_end"]) == (
        "2",
        "0",
        "2",
        "2",
        "1",
    )
    assert (c["tasks"], c["open_at_end"], c["on_time_rate"]) == ("1", "1", "0.0")
    nxt = rows(capsys, "weekly", "--period", "2026-W48")
    assert nxt["L3-010505"]["tasks"] == "1" and "L3-010102" not in nxt


def test_monthly_per_level2_grid(projection: str, capsys: pytest.CaptureFixture[str]) -> None:
    r = rows(capsys, "monthly", "--period", "2026-11")
    m = r["L2-0101"]
    assert (m["dispatched"], m["critical"], m["major"], m["escalated"], m["escalated_to_l1"]) == (
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
    got = (q["tasks"], q["closed"], q["closure_rate"], q["site_visits"], q["escalated"], q["sources_found"])
    assert got == ("6", "3", "0.5", "4", "2", "2")
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


# --- issue 15: reports a manager would forward -------------------------------------------------


def test_escalated_means_the_same_in_every_report(
    projection: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The W47 tasks b (escalated once) and e (escalated twice, up to level 1) are two escalated
    tasks whichever report counts them; the weekly report counted three escalation steps."""
    weekly = rows(capsys, "weekly", "--period", "2026-W47")
    monthly = rows(capsys, "monthly", "--period", "2026-11")
    quarterly = rows(capsys, "quarterly", "--period", "2026-Q4")
    yearly = rows(capsys, "assessment", "--period", "2026")
    assert weekly["L3-010109"]["escalated"] == yearly["L3-010109"]["escalated"] == "2"
    totals = [r["Total"]["escalated"] for r in (weekly, monthly, quarterly, yearly)]
    assert totals == ["2", "2", "2", "2"]
    assert monthly["Total"]["escalated_to_l1"] == "1"


def test_city_total_row_recomputes_rates(projection: str, capsys: pytest.CaptureFixture[str]) -> None:
    total = rows(capsys, "weekly", "--period", "2026-W47")["Total"]
    assert (total["name"], total["tasks"], total["on_time"], total["on_time_rate"]) == (
        "whole city",
        "5",
        "2",
        "0.4",
    )
    assert (total["site_visits"], total["reminders"], total["open_at_end"]) == ("4", "2", "2")
    monthly = rows(capsys, "monthly", "--period", "2026-11")["Total"]
    assert (monthly["level3_grids"], monthly["median_feedback_h"]) == ("3", "5.0")  # not sums
    yearly = rows(capsys, "assessment", "--period", "2026")["Total"]
    assert (yearly["tasks"], yearly["score"], yearly["grade"], yearly["rank"]) == ("6", "45.8", "D", "")
    # scoped: the total of the grids in scope only
    scoped = rows(capsys, "monthly", "--period", "2026-11", "--grid", "L1-01")["Total"]
    assert scoped["dispatched"] == "6" and scoped["name"] == "grid L1-01 (Tianshan)"


def test_change_against_the_previous_period(projection: str, capsys: pytest.CaptureFixture[str]) -> None:
    w48 = rows(capsys, "weekly", "--period", "2026-W48")
    # W48: one task at L3-010505 (W47: one), the city 1 against 5
    assert (w48["L3-010505"]["tasks_change"], w48["Total"]["tasks_change"]) == ("0", "-4")
    assert w48["Total"]["on_time_rate_change"] == "-0.4"  # 0 of 1 against 2 of 5
    assert rows(capsys, "weekly", "--period", "2026-W47")["Total"]["on_time_rate_change"] == ""  # W46: none
    code, out, _ = run(capsys, "weekly", "--period", "2026-W48")
    assert code == 0 and "vs 2026-W47" in out and "-40 pp" in out
    assert "Changes are against 2026-W47" in out


PREVIOUS_X = [
    ("weekly", "2026-W01", "2025-W52"),
    ("weekly", "2026-W47", "2026-W46"),
    ("monthly", "2026-01", "2025-12"),
    ("quarterly", "2026-Q1", "2025-Q4"),
    ("quarterly", "2026-Q4", "2026-Q3"),
    ("assessment", "2026", "2025"),
]


def test_previous_periods_are_adjacent() -> None:
    for kind, text, label in PREVIOUS_X:
        period = parse_period(kind, text, SHANGHAI)
        before = period.previous()
        assert before.label == label and before.end_day == period.first_day
        assert before == parse_period(kind, label, SHANGHAI)


def test_overdue_tasks_listed_at_the_periods_end_or_now(
    projection: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "weekly", "--period", "2026-W47")
    assert code == 0 and "Overdue tasks at 2026-11-23 00:00 (Asia/Shanghai): 2" in out
    lines = out.splitlines()
    listed = lines[lines.index(next(x for x in lines if x.startswith("Overdue tasks"))) + 3 :][:2]
    # still-open c (acknowledged, its deadline passed) and e (never answered, now at level 1)
    assert listed[0].split()[:5] == ["T-ST003-202611180200", "ST003", "L3-010505", "3", "acknowledged"]
    assert listed[1].split()[:5] == ["T-ST002-202611200200", "ST002", "L1-01", "1", "dispatched"]
    assert listed[0].endswith("3 d 14 h") and listed[1].endswith("38 h")
    # while the week runs, the list is as of now: mid-week only c was overdue
    engine = make_engine(projection)
    directory = Directory.load(DATA_DIR / "grids.json")
    week = parse_period("weekly", "2026-W47", SHANGHAI)
    mid = build("weekly", week, directory, engine, None, now=START + 4 * DAY)
    assert [t["task_id"] for t in mid.overdue] == ["T-ST003-202611180200"]
    assert mid.overdue[0]["overdue_h"] == 24.0 and mid.cutoff == START + 4 * DAY
    # a grid's report lists only its own tasks
    code, out, _ = run(capsys, "weekly", "--period", "2026-W47", "--grid", "L2-0105")
    assert "Overdue tasks at 2026-11-23 00:00 (Asia/Shanghai): 1" in out and "T-ST002" not in out
    engine.dispose()


def test_readable_headers_and_numbers_right_aligned(
    projection: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "weekly", "--period", "2026-W47")
    assert code == 0
    lines = out.splitlines()
    header = lines[2]
    assert header.startswith("Grid") and "On-time rate" in header and "Reminders sent" in header
    assert "_" not in header
    for name in ("Tasks", "On-time rate", "Open at end"):
        end = header.index(name) + len(name)  # a number column: its values end where its header ends
        for row in lines[4:7] + lines[8:9]:
            assert row[end - 1] != " " and (end == len(row) or row[end] == " "), (name, row)
    assert lines[8].startswith("Total      whole city")  # the total row, after a rule
    _, md, _ = run(capsys, "weekly", "--period", "2026-W47", "--format", "md")
    head, align = md.splitlines()[4:6]
    assert head.startswith("| Grid | Name | Tasks |")
    assert align.startswith("|---|---|---:|") and "| **Total** | **whole city** |" in md


def test_assessment_chart_is_scaled_to_100(projection: str, tmp_path: Path) -> None:
    """The chart titled "Score (0-100)" drew the best grid's 92.5 as a full bar."""
    engine = make_engine(projection)
    directory = Directory.load(DATA_DIR / "grids.json")
    report = build("assessment", parse_period("assessment", "2026", SHANGHAI), directory, engine, None)
    page = render(report, "html")
    score_chart = page.split("<svg")[1]
    assert "Score (0-100)" in score_chart and 'width="370.0"' in score_chart  # 92.5 of 100 on 400 px
    assert score_chart.count('class="grid"') == 5 and ">100</text>" in score_chart
    rates = page.split("<svg")[2]
    assert ">100%</text>" in rates and 'width="400.0"' in rates  # a 100 % rate fills its bar
    assert "<tfoot><tr>" in page and '<td class="num">6</td>' in page
    engine.dispose()


def test_patrols_inspections_and_completion_count_apart_from_alarm_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Week 2026-W47: L3-010102 patrols on Wednesday and inspects two sources; L3-010109 owes its
    patrol and never reports it. Alarm figures are those of the week story, unchanged."""
    from tests.sql_support import HOUR, patrol

    s = week_story()
    end = START + 7 * DAY - 10 * HOUR  # the week's end: the next Monday 00:00 China time
    week_start = end - 7 * DAY
    done = patrol(s, "L3-010102", week_start, end)
    done.act("acknowledge", START + HOUR).act("on_site", START + 2 * DAY)
    sources = [
        {"id": "SRC-9", "type": "industrial", "problem_found": True, "handled": False},
        {"type": "open_burning", "lon": 87.5, "lat": 43.7},
    ]
    done.act("submit", START + 2 * DAY + HOUR, source_found=True, sources_inspected=2, sources=sources)
    patrol(s, "L3-010109", week_start, end)
    url = f"sqlite:///{tmp_path / 'p.db'}"
    sink = SqlProjection(make_engine(url), zone=SHANGHAI)
    sink.setup()
    sink.write(s.alarms, s.events, s.feedback, letters())
    for k in [k for k in __import__("os").environ if k.startswith("AIRGRID_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("AIRGRID_DATABASE_URL", url)
    monkeypatch.setenv("AIRGRID_TIMEZONE", "Asia/Shanghai")

    week = rows(capsys, "weekly", "--period", "2026-W47")
    a, b = week["L3-010102"], week["L3-010109"]
    assert (
        a["patrols"],
        a["patrols_due"],
        a["patrol_completion_rate"],
        a["inspections"],
        a["problems_found"],
    ) == (
        "1",
        "1",
        "1.0",
        "5",  # the patrol's two, and three named by the week story's alarm tasks
        "4",
    )
    assert (b["patrols"], b["patrols_due"], b["patrol_completion_rate"], b["tasks"]) == ("0", "1", "0.0", "2")
    assert a["tasks"] == "2" and a["site_visits"] == "3"  # the patrol's on_site is no site visit
    year = rows(capsys, "assessment", "--period", "2026")
    plain = score(2, 2, 0, 1, 2)  # L3-010102's alarm tasks (both on time and closed, one repeat)
    assert plain is not None
    assert float(year["L3-010102"]["score"]) == round(0.85 * plain + 15.0, 1)
    assert year["L3-010102"]["patrol_completion_rate"] == "1.0"
