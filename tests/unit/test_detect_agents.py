"""The detection stages register on the one app the factory builds (no broker needed)."""

from __future__ import annotations

from pathlib import Path

from airgrid.config.settings import load_settings
from airgrid.domain.detection.compiled import RuleBook
from airgrid.domain.detection.warnings import WarningBoard
from airgrid.stages.warnings import apply_raw, station_level, warning_level
from airgrid.worker.app import create_app


def test_ingest_warnings_and_the_silence_sweep_register(tmp_path: Path) -> None:
    settings = load_settings(store="memory", data_dir=tmp_path, topic_prefix="x.")
    app = create_app(settings)
    rt = app.runtime
    assert "airgrid.ingest" in {a.name for a in app.agents.values()}
    tasks = " ".join(
        repr(getattr(t, "__wrapped__", t)) + getattr(t, "__qualname__", "") for t in app._app_tasks
    )
    assert "silence_sweep" in tasks and "warnings_reader" in tasks
    assert rt.names.station_commands == "x.station-commands" and "x.station-commands" in rt.names.all()
    assert isinstance(rt.tables["warnings"], WarningBoard) and isinstance(rt.tables["rulebook"], RuleBook)
    city = rt.directory.city
    assert rt.warning_level(next(iter(rt.directory.stations))) == "none" == warning_level(rt, city)
    apply_raw(
        rt.tables["warnings"],
        f'{{"city": "{city}", "level": "orange", "issued_at": "2026-01-01T00:00:00Z"}}'.encode(),
    )
    station = next(iter(rt.directory.stations))
    assert rt.warning_level(station) == "orange"  # the hook the task owner reads
    assert apply_raw(rt.tables["warnings"], b"not json") is None  # skipped, never fatal


async def test_the_silence_sweep_sends_a_command_per_silent_station(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    import orjson

    from airgrid.domain.detection.state import StationState
    from airgrid.stages.ingest import sweep_silence

    app = create_app(load_settings(store="memory", data_dir=tmp_path))
    rt = app.runtime
    now = datetime(2026, 12, 1, tzinfo=UTC)
    rt.clock = lambda: now
    old = (now - timedelta(hours=2)).timestamp()
    stations = {
        "ST001": StationState(last_obs=old, last_arrival=old).to_json(),
        "ST002": StationState(last_obs=now.timestamp() - 60, last_arrival=now.timestamp() - 60).to_json(),
        "ST003": None,
    }
    sent: list[tuple[bytes, bytes]] = []

    class Topic:
        async def send(self, key: bytes, value: bytes) -> None:
            sent.append((key, value))

    book = rt.tables["rulebook"]
    assert await sweep_silence(rt, stations, Topic(), lambda _now, _station: book.for_level("none")) == 1
    ((key, value),) = sent
    assert key == b"ST001" and orjson.loads(value)["command"] == "check_silence"


def test_a_region_warning_covers_the_stations_under_it_and_the_strictest_applies(tmp_path: Path) -> None:
    """A warning keyed by a level-1 or level-2 grid id applies to the stations under that grid
    only; a station under both a city and a regional warning gets the stricter one."""
    app = create_app(load_settings(store="memory", data_dir=tmp_path))
    rt = app.runtime
    board = rt.tables["warnings"]
    lineages = {s: rt.directory.lineage(s) for s in rt.directory.stations}
    inside, lin = next((s, x) for s, x in lineages.items() if x is not None)
    outside = next(s for s, x in lineages.items() if x is not None and x.l1 != lin.l1)

    def warn(area: str, level: str, at: str) -> None:
        apply_raw(board, f'{{"city": "{area}", "level": "{level}", "issued_at": "{at}"}}'.encode())

    warn(lin.l1, "red", "2026-01-01T00:00:00Z")
    assert (rt.warning_level(inside), rt.warning_level(outside)) == ("red", "none")
    warn(rt.directory.city, "yellow", "2026-01-01T00:00:00Z")
    assert (rt.warning_level(inside), rt.warning_level(outside)) == ("red", "yellow")
    warn(lin.l1, "none", "2026-01-02T00:00:00Z")  # the district lifts its own
    warn(lin.l2, "orange", "2026-01-02T00:00:00Z")  # a street of it raises one
    assert (rt.warning_level(inside), rt.warning_level(outside)) == ("orange", "yellow")
    assert station_level(rt, "NO-SUCH-STATION") == "yellow"  # the city's still holds
