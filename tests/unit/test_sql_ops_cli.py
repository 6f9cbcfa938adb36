"""The operator CLI on a SQLite projection (no broker): tasks list filters, tasks show history
with feedback actions, db status, and the one-line errors of feedback send and replay."""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from airgrid.cli import run as airgrid
from airgrid.sinks.sql import SqlProjection, list_tasks, make_engine
from tests.sql_support import letters, week_story


@pytest.fixture
def projection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'airgrid.db'}"
    sink = SqlProjection(make_engine(url))
    sink.setup()
    s = week_story()
    sink.write(s.alarms, s.events, s.feedback, letters())
    for k in [k for k in os.environ if k.startswith("AIRGRID_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("AIRGRID_DATABASE_URL", url)
    monkeypatch.setenv("AIRGRID_BROKER", "kafka://127.0.0.1:1")
    return url


def listed(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    assert airgrid(["tasks", "list", *argv, "--format", "csv"]) == 0
    return [r["task_id"] for r in csv.DictReader(io.StringIO(capsys.readouterr().out))]


def test_tasks_list_filters(projection: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert len(listed(capsys)) == 6
    assert listed(capsys, "--grid", "L3-010102") == ["T-ST001-202611160200", "T-ST001-202611190200"]
    assert len(listed(capsys, "--grid", "L2-0101")) == 4 and len(listed(capsys, "--grid", "L1-01")) == 6
    assert listed(capsys, "--state", "acknowledged") == ["T-ST003-202611180200", "T-ST003-202611230300"]
    assert listed(capsys, "--since", "2026-11-20", "--until", "2026-11-23") == ["T-ST002-202611200200"]
    assert listed(capsys, "--since", "2026-11-23T00:00+08:00") == ["T-ST003-202611230300"]


def test_tasks_show_full_history(projection: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert airgrid(["tasks", "show", "T-ST001-202611190200"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("  v")]
    assert len(lines) == 7 and "feedback_rejected" in lines[3] and "W-L2-0101 (reject)" in lines[3]
    assert "chain L3-010102 > L2-0101 > L1-01" in out and "2026-11-19 10:00:00" in out  # local time


def test_tasks_errors(projection: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert airgrid(["tasks", "show", "T-ST001-209901010000"]) == 1
    assert "no task 'T-ST001-209901010000'" in capsys.readouterr().err
    assert airgrid(["tasks", "list", "--grid", "NOPE"]) == 2
    assert "no grid 'NOPE'" in capsys.readouterr().err
    assert airgrid(["tasks", "list", "--since", "last tuesday"]) == 2
    assert "--since: 'last tuesday' is not an ISO date" in capsys.readouterr().err


def test_db_status(projection: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert airgrid(["db", "status"]) == 0
    out = capsys.readouterr().out
    assert "schema revision 0003 (head 0003)" in out and "task_events" in out


def test_feedback_send_refuses_bad_input_before_kafka(
    projection: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = airgrid(
        ["feedback", "send", "--task", "not-a-task", "--worker", "W-L3-010102-1", "--action", "acknowledge"]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("airgrid: invalid feedback: task_id") and err.count("\n") == 1
    code = airgrid(
        [
            "feedback",
            "send",
            "--task",
            "T-ST001-202611160200",
            "--worker",
            "W-L3-010102-1",
            "--action",
            "acknowledge",
        ]
    )
    err = capsys.readouterr().err
    assert (
        code == 1
        and err == "airgrid: cannot reach Kafka at kafka://127.0.0.1:1 (AIRGRID_BROKER): Connection refused\n"
    )


@pytest.mark.parametrize(
    ("task", "worker", "action", "message"),
    [
        (
            "T-ST001-202611160200",
            "W-NOBODY",
            "acknowledge",
            "--worker: no worker 'W-NOBODY' in the grid directory",
        ),
        (
            "T-ST999-202611160200",
            "W-L3-010102-1",
            "acknowledge",
            "--task: T-ST999-202611160200 names station or grid ST999, which is not in the grid directory",
        ),
        (
            "T-ST001-202611160200",
            "W-L3-021209-1",
            "acknowledge",
            "--worker W-L3-021209-1: worker's grid L3-021209 is not in the task's grid chain "
            "L3-010102 > L2-0101 > L1-01",
        ),
        (
            "T-ST001-202611160200",
            "W-L3-010102-1",
            "approve",
            "--worker W-L3-010102-1: approve needs a reviewer of grid L2-0101 or L1-01",
        ),
    ],
)
def test_feedback_send_checks_worker_and_task_against_the_directory(
    projection: str, capsys: pytest.CaptureFixture[str], task: str, worker: str, action: str, message: str
) -> None:
    """Issue 15: `--worker W-NOBODY` said `sent`; the worker then refused it where nobody looks.
    AIRGRID_BROKER is a closed port: a check that passed would end in `cannot reach Kafka`."""
    assert airgrid(["feedback", "send", "--task", task, "--worker", worker, "--action", action]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"airgrid: {message}") and err.count("\n") == 1, err


def test_replay_without_a_broker_is_exit_1(projection: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert airgrid(["replay", "--topic", "task-events", "--from-time", "yesterday"]) == 2
    assert "--from-time" in capsys.readouterr().err
    assert airgrid(["replay", "--topic", "task-events"]) == 1
    assert "cannot reach Kafka" in capsys.readouterr().err


def test_tasks_list_json_times_are_iso_8601(projection: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 15: `--format json` printed `2026-11-16 02:00:00+00:00` (str of a datetime)."""
    assert airgrid(["tasks", "list", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["created_at"] == "2026-11-16T02:00:00+00:00"
    assert all(datetime.fromisoformat(r["updated_at"]).tzinfo is not None for r in rows)
    assert airgrid(["tasks", "show", "T-ST001-202611190200", "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["task"]["deadline_at"] == "2026-11-20T02:00:00+00:00"
    assert {e["at"][10] for e in shown["events"]} == {"T"}


def test_escalated_and_overdue_tasks_by_query(projection: str) -> None:
    engine = make_engine(projection)

    def ids(**filters: Any) -> list[str]:
        return [r["task_id"] for r in list_tasks(engine, **filters)]

    assert ids(escalated=True) == ["T-ST002-202611170200", "T-ST002-202611200200"]  # to L2; to L1
    # overdue: open, feedback not submitted, deadline passed (the reports' meaning)
    assert ids(overdue_at=datetime(2026, 11, 20, 12, tzinfo=UTC)) == ["T-ST003-202611180200"]
    assert ids(overdue_at=datetime(2026, 11, 25, tzinfo=UTC)) == [
        "T-ST003-202611180200",
        "T-ST002-202611200200",
        "T-ST003-202611230300",
    ]
    assert ids(overdue_at=datetime(2026, 11, 25, tzinfo=UTC), grid="L2-0101") == ["T-ST002-202611200200"]


def test_tasks_list_state_escalated_and_overdue(projection: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 15: `--state` could not filter escalated or overdue tasks."""
    assert airgrid(["tasks", "list", "--format", "json"]) == 0
    every = json.loads(capsys.readouterr().out)
    assert listed(capsys, "--state", "escalated") == [r["task_id"] for r in every if r["level"] < 3]
    now = datetime.now(UTC)
    late = [
        r["task_id"]
        for r in every
        if r["state"] in ("dispatched", "acknowledged", "on_site")
        and datetime.fromisoformat(r["deadline_at"]) < now
    ]
    assert listed(capsys, "--state", "overdue") == late
    assert "T-ST001-202611160200" not in late  # closed: never overdue


def test_sources_list_and_show_the_register(projection: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert airgrid(["sources", "list", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["source_id"], r["inspections"], r["repeat_offences"]) for r in rows] == [
        ("SRC-1", "2", "1"),  # most repeat offences first
        ("coal_burning@43.7900,87.6100", "1", "0"),
    ]
    assert airgrid(["sources", "list", "--type", "coal_burning", "--format", "json"]) == 0
    assert [r["type"] for r in json.loads(capsys.readouterr().out)] == ["coal_burning"]
    assert airgrid(["sources", "list", "--grid", "L2-0101", "--format", "json"]) == 0  # levels below
    assert len(json.loads(capsys.readouterr().out)) == 2
    assert airgrid(["sources", "list", "--grid", "L2-0102", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert airgrid(["sources", "list", "--grid", "NOPE"]) == 2
    assert "no grid 'NOPE'" in capsys.readouterr().err
    assert airgrid(["sources", "show", "SRC-1"]) == 0
    out = capsys.readouterr().out
    assert "tower site" in out and "repeat offences 1" in out
    visits = [line for line in out.splitlines() if line.startswith("  2026")]
    assert len(visits) == 2 and "problem, handled" in visits[0] and "problem, not handled" in visits[1]
    assert airgrid(["sources", "show", "NOPE"]) == 1
    assert "no source 'NOPE'" in capsys.readouterr().err


def test_feedback_send_reports_a_patrol_with_its_sources(
    projection: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A grid's own task (a patrol) passes the directory check by its grid; the sources parse."""
    from airgrid.cli import feedback as cli_feedback

    sent: list[Any] = []

    async def capture(s: Any, msg: Any) -> None:
        sent.append(msg)

    monkeypatch.setattr(cli_feedback, "_send", capture)
    patrol = "T-L3-010102-P20261129160000"
    argv = ["feedback", "send", "--task", patrol, "--worker", "W-L3-010102-1", "--action", "submit"]
    sources = [
        "--source",
        "construction_dust#SRC-1+problem+handled",
        "--source",
        "catering_fumes@43.79,87.61",
    ]
    assert airgrid([*argv, *sources]) == 0, capsys.readouterr().err
    (msg,) = sent
    assert msg.findings.source_found and msg.findings.sources_inspected == 2
    assert [v.register_id for v in msg.findings.sources] == ["SRC-1", "catering_fumes@43.7900,87.6100"]
    assert msg.findings.sources[0].handled and not msg.findings.sources[1].problem_found
    other = ["feedback", "send", "--task", patrol, "--worker", "W-L3-021209-1", "--action", "on_site"]
    assert airgrid(other) == 2 and "not in the task's grid chain" in capsys.readouterr().err
    assert airgrid([*argv, "--source", "dust+maybe"]) == 2
    assert "expected TYPE[#ID][@LAT,LON][+problem][+handled]" in capsys.readouterr().err
