"""The stages without a broker, as the worker drives them: ingest's order (alarms acknowledged by
Kafka before the state is written), the silence sweep, feedback intake, warnings; and the binding,
which connects each stage to its stream, timer or task."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from airgrid.config.settings import DATA_DIR, load_settings
from airgrid.domain.detection.compiled import RuleBook
from airgrid.domain.detection.state import StationState
from airgrid.domain.detection.warnings import StationWarnings, WarningBoard
from airgrid.domain.directory import Directory
from airgrid.domain.intake import Limits
from airgrid.domain.rules import load_rules
from airgrid.metrics import Metrics
from airgrid.models.feedback import Feedback
from airgrid.stages.feedback import FeedbackIntake
from airgrid.stages.ingest import Ingest, SilenceSweep
from airgrid.stages.warnings import WarningsFollower
from airgrid.worker.binding import create_app
from tests.unit.stage_fakes import T0, FakeTopic, on

DIRECTORY = Directory.load(DATA_DIR / "grids.json")
READINGS, COMMANDS = "readings", "station-commands"


def make_ingest(stations: dict[str, Any] | None = None, board: WarningBoard | None = None) -> Ingest:
    return Ingest(
        stations={} if stations is None else stations,
        alarms=FakeTopic(),
        readings_dlq=FakeTopic(),
        commands_dlq=FakeTopic(),
        commands_topic=COMMANDS,
        rulebook=RuleBook(load_rules(DATA_DIR / "rules.toml"), grace_s=900),
        warnings=StationWarnings(board or WarningBoard(), DIRECTORY, lambda: T0),
        directory=DIRECTORY,
        limits=Limits(max_bytes=65536, max_future=timedelta(minutes=5), max_age=timedelta(days=400)),
        metrics=Metrics(),
        clock=lambda: T0,
    )


def reading(station: str, minutes_before: int, pm25: float) -> bytes:
    at = T0 - timedelta(minutes=minutes_before)
    values = {"pm25": pm25, "pm10": pm25 * 1.4, "no2": 30.0, "so2": 8.0, "co": 0.6, "o3": 60.0}
    body = {"schema_version": 1, "station_id": station, "observed_at": at.isoformat()}
    return orjson.dumps({**body, "interval_s": 600, "values": values})


def fake(x: Any) -> FakeTopic:
    assert isinstance(x, FakeTopic)
    return x


async def test_ingest_writes_the_state_only_after_kafka_acknowledged_the_alarms() -> None:
    """The order that makes a kill lose nothing: a crash before the acks replays the reading
    against the old state (same event ids), never a state that says the alarm went out."""
    ingest = make_ingest()
    for i, minutes in enumerate(range(115, 55, -10)):  # one full hour of 10-minute readings
        await ingest.handle(on(READINGS, reading("ST001", minutes, 20.0), key="ST001", offset=i))
    before = ingest.stations["ST001"]
    alarms = fake(ingest.alarms)
    alarms.hold = True  # Kafka has not answered yet
    hour = [
        on(READINGS, reading("ST001", m, 150.0), key="ST001", offset=10 + i)
        for i, m in enumerate(range(55, -5, -10))
    ]
    for msg in hour[:-1]:
        await ingest.handle(msg)
    written = ingest.stations["ST001"]
    closing = asyncio.create_task(ingest.handle(hour[-1]))  # closes the hour: an alarm opens
    await asyncio.sleep(0.05)
    assert alarms.sent and not closing.done()  # sent, waiting for the acknowledgement
    assert ingest.stations["ST001"] == written  # the state is not written yet
    alarms.ack_all()
    await asyncio.wait_for(closing, 1)
    assert ingest.stations["ST001"] != written != before
    opened = [a for a in alarms.json() if a["kind"] == "opened"]
    assert {a["station_id"] for a in opened} == {"ST001"}
    assert "pm25_1h_exceedance" in {a["rule_id"] for a in opened}
    # delivered again after a restart: recognised by its offset, nothing sent twice
    sent = len(alarms.sent)
    await ingest.handle(hour[-1])
    assert len(alarms.sent) == sent and ingest.m.readings.labels("replayed")._value.get() == 1


async def test_ingest_refuses_bad_readings_with_their_origin_and_leaves_the_state_alone() -> None:
    ingest = make_ingest()
    await ingest.handle(on(READINGS, b"{not json", key="ST001", offset=4))
    await ingest.handle(on(READINGS, reading("NOPE", 10, 30.0), key="NOPE", offset=5))
    await ingest.handle(on(COMMANDS, b'{"command": "reboot"}', key="ST001", offset=6))
    codes = [(x["reason_code"], x["origin"]["offset"]) for x in fake(ingest.readings_dlq).json()]
    assert codes == [("not_json", 4), ("unknown_station", 5)]
    (unreadable,) = fake(ingest.commands_dlq).json()
    assert unreadable["reason_code"] == "unreadable" and unreadable["origin"]["topic"] == COMMANDS
    assert ingest.stations == {} and fake(ingest.alarms).sent == []


async def test_an_internal_error_in_ingest_is_raised_to_the_driver_not_dead_lettered() -> None:
    class Broken(dict[str, Any]):
        def __setitem__(self, key: str, value: Any) -> None:
            raise RuntimeError("PartitionsMismatch")

    ingest = make_ingest(Broken())
    with pytest.raises(RuntimeError):
        await ingest.handle(on(READINGS, reading("ST001", 5, 30.0), key="ST001"))
    assert fake(ingest.readings_dlq).sent == []


async def test_the_silence_sweep_sends_a_command_per_silent_station_and_ingest_applies_it() -> None:
    old = (T0 - timedelta(hours=2)).timestamp()
    recent = T0.timestamp() - 60
    stations = {
        "ST001": StationState(last_obs=old, last_arrival=old).to_json(),
        "ST002": StationState(last_obs=recent, last_arrival=recent).to_json(),
        "ST003": None,
    }
    ingest = make_ingest(stations)
    commands = FakeTopic()
    sweep = SilenceSweep(ingest, commands)
    assert sweep.interval_s is not None and 1.0 <= sweep.interval_s <= 60.0
    assert await sweep.sweep() == 1
    (command,) = commands.json()
    assert commands.keys == [b"ST001"] and command["command"] == "check_silence"
    await ingest.handle(on(COMMANDS, commands.sent[0], key="ST001"))  # the agent applies it
    (alarm,) = fake(ingest.alarms).json()
    assert (alarm["kind"], alarm["route"], alarm["station_id"]) == ("opened", "operations", "ST001")


async def test_feedback_is_re_keyed_to_its_station_or_refused_with_its_origin() -> None:
    intake = FeedbackIntake(
        rejected=FakeTopic(),
        commands=FakeTopic(),
        directory=DIRECTORY,
        metrics=Metrics(),
        clock=lambda: T0,
        max_bytes=65536,
    )
    good = Feedback(
        feedback_id="f1", task_id="T-ST007-202603010800", worker_id="W-1", action="acknowledge", at=T0
    )
    await intake.handle(on("feedback", good, key="anything", offset=3))
    nowhere = good.model_copy(update={"feedback_id": "f2", "task_id": "T-NOPE-202603010800"})
    await intake.handle(on("feedback", nowhere, offset=4))
    await intake.handle(on("feedback", b"\xff\xfe", offset=5))
    (cmd,) = fake(intake.commands).json()
    assert fake(intake.commands).keys == [b"ST007"] and cmd["origin_offset"] == 3
    refused = fake(intake.rejected).json()
    assert [(r["reason_code"], r["origin"]["offset"], r["task_id"]) for r in refused] == [
        ("unknown_task", 4, "T-NOPE-202603010800"),
        ("not_json", 5, None),
    ]


def test_warnings_follow_the_topic_and_the_strictest_over_a_station_applies() -> None:
    """A warning keyed by a level-1 or level-2 grid id applies to the stations under that grid
    only; a station under both a city and a regional warning gets the stricter one."""
    board = WarningBoard()
    follower = WarningsFollower(board)
    warnings = StationWarnings(board, DIRECTORY, lambda: T0)
    lineages = {s: DIRECTORY.lineage(s) for s in DIRECTORY.stations}
    inside, lin = next((s, x) for s, x in lineages.items() if x is not None)
    outside = next(s for s, x in lineages.items() if x is not None and x.l1 != lin.l1)

    def warn(area: str, level: str, at: str) -> None:
        follower.handle(f'{{"city": "{area}", "level": "{level}", "issued_at": "{at}"}}'.encode())

    assert follower.handle(b"not json") is None  # skipped, never fatal
    warn(lin.l1, "red", "2026-01-01T00:00:00Z")
    assert (warnings.level(inside), warnings.level(outside)) == ("red", "none")
    warn(DIRECTORY.city, "yellow", "2026-01-01T00:00:00Z")
    assert (warnings.level(inside), warnings.level(outside)) == ("red", "yellow")
    warn(lin.l1, "none", "2026-01-02T00:00:00Z")  # the district lifts its own
    warn(lin.l2, "orange", "2026-01-02T00:00:00Z")  # a street of it raises one
    assert (warnings.level(inside), warnings.level(outside)) == ("orange", "yellow")
    assert warnings.level("NO-SUCH-STATION") == "yellow"  # the city's still holds
    assert warnings.city_level(DIRECTORY.city) == "yellow"


def test_the_binding_connects_every_stage_once(tmp_path: Path) -> None:
    settings = load_settings(store="memory", data_dir=tmp_path, topic_prefix="x.")
    app = create_app(settings)
    bound = app.airgrid
    assert {a.name for a in app.agents.values()} == {"airgrid.ingest", "airgrid.owner", "airgrid.feedback"}
    assert all(a.concurrency == 1 for a in app.agents.values())
    tasks = [getattr(t, "__qualname__", "") for t in app._app_tasks]  # timers are tasks too
    timers = ["sweeper_pass", "silence_pass", "_bind_timers.<locals>.guard_tables"]
    readers = ["_bind_tasks.<locals>.follow_warnings", "SinkRunner.run"]
    assert sorted(tasks) == sorted(timers + readers)
    assert bound.wiring.names.station_commands == "x.station-commands"
    assert (
        bound.ingest.stations is bound.wiring.tables.stations
        and bound.owner.tasks is bound.wiring.tables.tasks
    )
    assert bound.projection is not None and bound.projection.sink.name == "projection"
    with pytest.raises(AttributeError, match="cannot assign"):
        bound.wiring.clock = lambda: T0  # type: ignore[misc]
