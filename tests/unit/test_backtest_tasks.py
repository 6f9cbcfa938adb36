"""``airgrid backtest --tasks`` on the real Beijing data (December 2016 and January 2017): the tasks
the owner would dispatch with and without the regional logic, every opened grid alarm accounted
for, the closing models, and the CSV."""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

import pytest

from airgrid.cli import run as airgrid
from airgrid.config.settings import DATA_DIR
from airgrid.domain.backtest import read_rows, run
from airgrid.domain.backtest_tasks import ClosingModel, TaskReplay
from airgrid.domain.backtest_tasks_report import CSV_COLUMNS, per_month, worst_episodes
from airgrid.domain.detection.compiled import compile_rules
from airgrid.domain.directory import Directory
from airgrid.domain.escalation import load_policy_book
from airgrid.domain.regional import RegionalDispatch
from airgrid.domain.rules import load_rules
from tests.helpers import REPO

BEIJING = REPO / "tests" / "data" / "beijing"
FILES = sorted(BEIJING.glob("*.csv"))
REGIONAL_RULES = DATA_DIR / "rules-regional.toml"


@cache
def replay(dispatch: RegionalDispatch = "none", closing: ClosingModel = "deadline") -> TaskReplay:
    cat = load_rules(REGIONAL_RULES)
    rs = compile_rules(cat, "none")
    directory = Directory.load(DATA_DIR / "grids-beijing.json")
    book = load_policy_book(DATA_DIR / "policy.toml")
    tasks = TaskReplay(rs, cat.regional, directory, book, dispatch, closing=closing)
    run([row for f in FILES for row in read_rows(f)], rs, observer=tasks)
    tasks.finish()
    return tasks


def in_episode(r: TaskReplay, ts: float) -> bool:
    return any(e.since <= ts < e.end for e in r.episodes.values())


def test_every_opened_grid_alarm_is_dispatched_joined_suppressed_or_sent_to_the_region() -> None:
    for dispatch in ("none", "level2"):
        r = replay(dispatch)
        wo, wi = r.without.counts, r.with_.counts
        assert wo["dispatched"] + wo["joined"] == r.opened["station"] > 300
        assert len(r.without.tasks) == wo["dispatched"]
        opened = r.opened["station"] + r.opened["local"]
        assert wi["dispatched"] + wi["joined"] + wi["region"] + wi["suppressed"] == opened
        assert sum(t.alarms for t in r.with_.tallies.values()) == opened
        assert len(r.with_.tasks) == wi["dispatched"] + wi["region_tasks"]
        # every alarm id sits in exactly one task, none twice
        held = [a for t in r.with_.tasks for a in t.alarms]
        assert len(held) == len(set(held))


def test_the_regional_logic_takes_the_level3_flood_out_of_the_regional_episodes() -> None:
    r = replay("none")
    # the replay's clock (one data hour per step) lets every station of an hour be waited for; a
    # station back from a silence longer than wait_hours is not waited for: its first hour is late
    assert r.late <= 5 and r.complete[True] > 0.98 * sum(r.complete.values())
    assert len(r.episodes) >= 10  # the winter of 2016/17: one haze after another
    without = [t for t in r.without.tasks if in_episode(r, t.dispatched_at)]
    with_ = [t for t in r.with_.tasks if in_episode(r, t.dispatched_at)]
    assert len(with_) < len(without) / 2
    # during an episode only local excess still reaches a level-3 grid (dispatch = "none") ...
    for e in r.episodes.values():
        assert e.actions["level3"] == e.local
        assert e.actions["region"] == 0
    # ... and local sources remain visible inside the worst episodes
    assert sum(e.local for e in worst_episodes(r)) > 0
    assert any(t.local for t in with_)
    assert r.with_.counts["suppressed"] > r.with_.counts["dispatched"]
    # fewer level-3 tasks over the two months, month by month
    months = per_month(r)
    assert all(with_n < without_n for without_n, with_n in (months["2016-12"], months["2017-01"]))


def test_without_the_regional_logic_is_the_same_whatever_the_regional_dispatch() -> None:
    a, b = replay("none"), replay("level2")
    assert [(t.task_id, t.dispatched_at) for t in a.without.tasks] == [
        (t.task_id, t.dispatched_at) for t in b.without.tasks
    ]


def test_level2_dispatch_gives_each_regional_episode_a_task_of_the_region_grid() -> None:
    r = replay("level2")
    region = [t for t in r.with_.tasks if t.level == 2]
    assert {t.grid for t in region} == {"BJ-N"}
    assert r.with_.counts["suppressed"] == 0
    assert r.with_.counts["region"] == replay("none").with_.counts["suppressed"]
    assert len({t.task_id for t in region}) == len(region)
    # every episode is held by a region task (a new one after each feedback deadline)
    held = {a for t in region for a in t.alarms}
    for e in r.episodes.values():
        assert r.logic is not None
        assert r.logic.region_task(e.region, e.since, 0, 0.0, 0.0).episode.alarm_id in held
    assert len(r.episodes) <= len(region)
    level3 = [t for t in r.with_.tasks if t.level == 3]
    assert len(level3) == len(replay("none").with_.tasks)


def test_the_closing_models() -> None:
    deadline, cleared = replay("none", "deadline"), replay("none", "cleared")
    for t in deadline.without.tasks:
        assert t.closed_at is None or t.closed_at == t.deadline
    for t in cleared.without.tasks:
        assert t.closed_at is None or t.closed_at >= t.deadline
    # a task that stays open until its alarms cleared collects more of them: fewer tasks
    assert len(cleared.without.tasks) < len(deadline.without.tasks)
    assert cleared.without.counts["joined"] > deadline.without.counts["joined"]


def test_the_command_prints_both_sides_and_writes_the_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tasks.csv"
    args = ["backtest", *map(str, FILES), "--rules", str(REGIONAL_RULES), "--tasks-out", str(out), "--quiet"]
    assert airgrid(args) == 0
    text = capsys.readouterr().out
    assert "task-closing model (deadline): a task closes at its policy's feedback deadline" in text
    assert "regional dispatch during an episode: none" in text
    assert "tasks per grid and ISO week: without | with" in text
    assert "BJ-N-Dongsi      2016-W50" in text
    head = next(line for line in text.splitlines() if line.startswith("station "))
    columns = "station month alarms tasks joined | alarms tasks local joined region suppr"
    assert head.split() == columns.split(" ")
    assert next(line for line in text.splitlines() if line.startswith("without the regional logic: "))
    r = replay("none")
    with out.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == CSV_COLUMNS
    by_variant = {v: [row for row in rows if row["variant"] == v] for v in ("without", "with")}
    assert len(by_variant["without"]) == len(r.without.tasks)
    assert len(by_variant["with"]) == len(r.with_.tasks)
    assert {row["level"] for row in rows} == {"3"}
    assert {row["grid"] for row in rows} == {"BJ-N-Dongsi", "BJ-N-Changping", "BJ-N-Huairou"}
    local = [row for row in by_variant["with"] if row["local_excess"] == "1"]
    assert local and {row["rule"] for row in local} == {"pm25_local_excess"}
    assert not any(row["local_excess"] == "1" for row in by_variant["without"])
    first = by_variant["without"][0]
    assert first["dispatched_at"].endswith("+08:00") and first["week"].startswith("2016-W")
    assert int(first["alarms"]) >= 1 and first["policy"] == "standard"


def test_without_a_regional_section_both_sides_agree(capsys: pytest.CaptureFixture[str]) -> None:
    assert airgrid(["backtest", str(FILES[0]), "--tasks", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "the rules have no [regional] section" in text
    lines = text.splitlines()
    month = lines.index("tasks per month: without | with")
    for line in lines[month + 2 : month + 4]:
        _, a, b = line.split()
        assert a == b


def test_a_station_missing_from_the_grid_directory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = FILES[0].read_text(encoding="utf-8").splitlines()[:3]
    other = tmp_path / "other.csv"
    other.write_text(
        "\n".join([lines[0], *(line.replace('"Changping"', '"Shunyi"') for line in lines[1:])]) + "\n"
    )
    assert airgrid(["backtest", str(other), "--tasks", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Shunyi" in err and "--grid" in err


def test_the_regional_rules_file_is_the_shipped_catalogue_plus_the_regional_part() -> None:
    shipped = (DATA_DIR / "rules.toml").read_text(encoding="utf-8")
    regional = REGIONAL_RULES.read_text(encoding="utf-8")
    assert regional.startswith(shipped)  # so it cannot drift from the shipped rules
    tail = regional[len(shipped) :]
    assert "[regional]" in tail and 'kind = "local_excess"' in tail


def test_task_options_without_tasks_or_an_unwritable_csv_fail_before_the_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [str(p) for p in sorted((REPO / "tests" / "data" / "beijing").glob("*.csv"))]
    assert airgrid(["backtest", *files, "--dispatch", "level2", "--quiet"]) == 2
    assert "--dispatch and --task-closing go with --tasks" in capsys.readouterr().err
    assert airgrid(["backtest", *files, "--tasks-out", str(tmp_path / "no" / "x.csv"), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert "no directory" in captured.err and captured.out == ""  # nothing replayed first
