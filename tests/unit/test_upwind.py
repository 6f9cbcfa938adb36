"""Upwind co-notification: the bearing and sector maths, the grids upwind of a station, calm and
missing wind, the alarm events that carry the reading's wind (byte-identical on a replay), and
the dispatch that lists the upwind grids first in ``co_notified`` and alone in ``upwind``."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from airgrid.config.settings import DATA_DIR, load_settings
from airgrid.domain.directory import NO_UPWIND, Directory, Upwind
from airgrid.domain.escalation import Policy
from airgrid.domain.geo import Boundary, Locator, bearing_deg, distance_km, in_sector
from airgrid.domain.tasks import dispatch
from airgrid.kafka.topics import TopicNames
from airgrid.models.alarms import AlarmEvent
from airgrid.models.readings import Wind
from airgrid.models.tasks import Task
from airgrid.ops.watch import Formatter
from tests.unit.stage_fakes import T0, on
from tests.unit.test_stages import fake, make_ingest
from tests.unit.test_tasks_owner import ALARMS, alarm, events, make_owner

DIRECTORY = Directory.load(DATA_DIR / "grids.json")
STATION = "ST001"
NW = Wind(speed=3.0, direction=315.0)  # from the north-west: the air passed over the grids there


def test_bearings_of_the_four_quarters() -> None:
    here = (87.6, 43.8)
    assert bearing_deg(here, (87.6, 43.9)) == pytest.approx(0.0, abs=1e-9)
    assert bearing_deg(here, (87.6, 43.7)) == pytest.approx(180.0)
    # due east on a parallel the great circle starts a little north of east (x < 90)
    assert bearing_deg(here, (87.7, 43.8)) == pytest.approx(90.0, abs=0.05)
    assert bearing_deg(here, (87.5, 43.8)) == pytest.approx(270.0, abs=0.05)
    assert bearing_deg((0.0, 0.0), (1.0, 0.0)) == pytest.approx(90.0)
    assert bearing_deg((0.0, 0.0), (-1.0, 1.0)) == pytest.approx(315.0, abs=0.01)
    assert 0.0 <= bearing_deg((0.0, 0.0), (-1e-9, 1.0)) < 360.0  # just west of north: near 360, not -0


def test_the_sector_is_centred_on_the_wind_and_wraps_across_north() -> None:
    assert in_sector(350.0, 10.0, 60.0) and in_sector(10.0, 350.0, 60.0)  # 20 degrees apart
    assert in_sector(40.0, 10.0, 60.0) and in_sector(340.0, 10.0, 60.0)  # edges included
    assert not in_sector(40.01, 10.0, 60.0) and not in_sector(339.99, 10.0, 60.0)
    assert in_sector(0.0, 359.9, 1.0) and not in_sector(180.0, 0.0, 359.0)
    assert all(in_sector(b, 0.0, 360.0) for b in (0.0, 90.0, 180.0, 270.0, 359.99))


@given(st.floats(0, 360, exclude_max=True), st.floats(0, 360, exclude_max=True), st.floats(1, 360))
def test_the_sector_test_is_the_angular_difference(bearing: float, wind: float, sector: float) -> None:
    diff = min(abs(bearing - wind), 360 - abs(bearing - wind))
    if abs(diff - sector / 2) > 1e-6:  # on an edge: either answer is fine
        assert in_sector(bearing, wind, sector) == (diff < sector / 2)


def square(grid: str, lon: float, lat: float, half: float = 0.001) -> Boundary:
    ring = (
        (lon - half, lat - half), (lon + half, lat - half), (lon + half, lat + half),
        (lon - half, lat + half), (lon - half, lat - half),
    )  # fmt: skip
    return Boundary(grid, ((ring,),))


def test_the_locator_keeps_the_grids_in_the_sector_and_radius_nearest_first() -> None:
    here = (87.6, 43.8)
    d = 0.009  # about 1 km north-south
    grids = [
        square("N2", 87.6, 43.8 + 2 * d),
        square("N1", 87.6, 43.8 + d),
        square("N-far", 87.6, 43.8 + 20 * d),  # about 20 km: outside the radius
        square("NE", 87.6 + d, 43.8 + d),  # 0.72 km east, 1 km north: bearing about 36 degrees
        square("E", 87.6 + d, 43.8),
        square("S", 87.6, 43.8 - d),
    ]
    loc = Locator(grids)
    assert [g for _, g in loc.upwind(here, 0.0, 60.0, 5.0)] == ["N1", "N2"]
    assert bearing_deg(here, loc.boundaries[3].centre) == pytest.approx(35.8, abs=0.1)
    assert [g for _, g in loc.upwind(here, 340.0, 60.0, 5.0)] == ["N1", "N2"]  # NE 56 off: out
    assert [g for _, g in loc.upwind(here, 20.0, 60.0, 5.0)] == ["N1", "NE", "N2"]
    assert [g for _, g in loc.upwind(here, 40.0, 60.0, 5.0)] == ["NE"]  # N 40 off, E 50 off
    assert [g for _, g in loc.upwind(here, 350.0, 60.0, 50.0)] == ["N1", "N2", "N-far"]
    assert [g for _, g in loc.upwind(here, 180.0, 60.0, 5.0)] == ["S"]
    assert [g for _, g in loc.upwind(here, 0.0, 360.0, 5.0)] == [g for _, g in loc.within(here, 5.0)]


def test_the_directory_lists_the_grids_upwind_of_a_station_without_its_own() -> None:
    st_ = DIRECTORY.stations[STATION]
    here = (st_.lon, st_.lat)
    own = DIRECTORY.lineage(STATION).l3  # type: ignore[union-attr]
    up = DIRECTORY.upwind(STATION, 315.0, 60.0, 5.0)
    assert up and own not in up
    centres = {b.grid_id: b.centre for b in DIRECTORY.locator.boundaries}
    distances = [distance_km(here, centres[g]) for g in up]
    assert distances == sorted(distances) and max(distances) <= 5.0
    assert all(in_sector(bearing_deg(here, centres[g]), 315.0, 60.0) for g in up)
    near = DIRECTORY.neighbours(STATION, 5.0)
    assert [g for g in near if g in up] == list(up)  # the radius list, filtered by the sector
    quarters = {g for w in (0.0, 90.0, 180.0, 270.0) for g in DIRECTORY.upwind(STATION, w, 90.0, 5.0)}
    assert quarters == set(near)  # four 90-degree sectors cover the circle
    assert DIRECTORY.upwind("NOPE", 315.0, 60.0, 5.0) == ()
    assert DIRECTORY.upwind(STATION, 315.0, 60.0, 0.0) == ()


def test_no_grid_is_upwind_in_a_calm_without_a_wind_or_when_off() -> None:
    rule = Upwind(radius_km=5.0, sector_deg=60.0, min_speed=0.5)
    expected = DIRECTORY.upwind(STATION, 315.0, 60.0, 5.0)
    assert rule.grids(DIRECTORY, STATION, NW) == expected
    assert rule.grids(DIRECTORY, STATION, Wind(speed=0.5, direction=315.0)) == expected  # not calm
    assert rule.grids(DIRECTORY, STATION, Wind(speed=0.49, direction=315.0)) == ()
    assert rule.grids(DIRECTORY, STATION, None) == ()
    assert NO_UPWIND.grids(DIRECTORY, STATION, NW) == ()


def test_the_settings_give_the_upwind_rule_and_refuse_impossible_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Upwind.of(load_settings()) == Upwind(radius_km=5.0, sector_deg=60.0, min_speed=0.5)
    monkeypatch.setenv("AIRGRID_UPWIND_SECTOR_DEGREES", "90")
    monkeypatch.setenv("AIRGRID_UPWIND_RADIUS_KM", "0")
    assert Upwind.of(load_settings()) == Upwind(radius_km=0.0, sector_deg=90.0, min_speed=0.5)
    for name, value in (("SECTOR_DEGREES", "0"), ("SECTOR_DEGREES", "361"), ("RADIUS_KM", "-1")):
        monkeypatch.setenv(f"AIRGRID_UPWIND_{name}", value)
        with pytest.raises(Exception, match=f"(?i)upwind_{name}"):
            load_settings()
        monkeypatch.delenv(f"AIRGRID_UPWIND_{name}")


def test_dispatch_lists_the_upwind_grids_first_then_the_radius_ones_each_once() -> None:
    lineage = DIRECTORY.lineage(STATION)
    assert lineage is not None
    task, event = dispatch(
        alarm(),
        lineage,
        Policy(name="p"),
        T0,
        co_notified=("L3-A", "L3-B", lineage.l3),
        upwind=("L3-B", lineage.l3, "L3-C"),
    )
    assert task.upwind == event.upwind == ("L3-B", "L3-C")
    assert task.co_notified == event.co_notified == ("L3-B", "L3-C", "L3-A")
    assert event.schema_version == 2


def with_wind(a: AlarmEvent, wind: Wind | None) -> AlarmEvent:
    return AlarmEvent.model_validate({**a.model_dump(), "wind": None if wind is None else wind.model_dump()})


async def test_the_owner_co_notifies_the_grids_upwind_by_the_alarms_wind(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('default = "s"\n[policies.s]\nfeedback_deadline_s = 100\n')
    owner = make_owner(policy)
    owner.upwind = Upwind(radius_km=5.0, sector_deg=60.0, min_speed=0.5)
    owner.co_notify_radius_km = 1.5
    owner.clock = lambda: T0
    await owner.handle(on(ALARMS, with_wind(alarm(STATION), NW), key=STATION))
    calm = with_wind(alarm("ST002"), Wind(speed=0.2, direction=315.0))
    await owner.handle(on(ALARMS, calm, key="ST002"))
    await owner.finish()
    first, second = events(owner)
    up = DIRECTORY.upwind(STATION, 315.0, 60.0, 5.0)
    near = DIRECTORY.neighbours(STATION, 1.5)
    assert up == ("L3-010908", "L3-010909") and near == ("L3-010103", "L3-010101")  # docs/tasks.md
    assert first["upwind"] == list(up)
    assert first["co_notified"] == list(dict.fromkeys((*up, *near)))
    assert first["schema_version"] == 2 and first["at"] == "2026-03-01T08:00:00Z"
    assert Task.model_validate(owner.tasks[first["task_id"]]).upwind == up
    assert second["upwind"] == [] and second["co_notified"] == list(DIRECTORY.neighbours("ST002", 1.5))


def reading(minutes_before: int, pm25: float, wind: Wind | None) -> bytes:
    at = T0 - timedelta(minutes=minutes_before)
    body = {"schema_version": 1, "station_id": STATION, "observed_at": at.isoformat(), "interval_s": 600}
    values = {"pm25": pm25, "pm10": pm25 * 1.4, "no2": 30.0, "so2": 8.0, "co": 0.6, "o3": 60.0}
    extra = {} if wind is None else {"wind": wind.model_dump()}
    return orjson.dumps({**body, "values": values, **extra})


async def alarms_of(readings: list[bytes]) -> list[tuple[int, bytes]]:
    """(index of the reading being handled, alarm bytes) of every alarm sent."""
    ingest = make_ingest()
    out: list[tuple[int, bytes]] = []
    for offset, raw in enumerate(readings):
        await ingest.handle(on("readings", raw, key=STATION, offset=offset))
        sent = fake(ingest.alarms).sent
        out += [(offset, a) for a in sent[len(out) :]]
    return out


async def test_alarms_carry_the_wind_of_the_reading_that_decided_them_byte_identical_on_replay(
    tmp_path: Path,
) -> None:
    winds = [Wind(speed=1.0 + i / 10, direction=float(30 * i)) for i in range(12)]
    clean = [reading(115 - 10 * i, 20.0, winds[i]) for i in range(6)]  # a clean hour
    dirty = [reading(55 - 10 * i, 150.0, winds[6 + i]) for i in range(6)]  # alarms open in it
    sent = await alarms_of(clean + dirty)
    assert sent and sent == await alarms_of(clean + dirty)  # a replay: the same bytes
    for index, raw in sent:
        alarm_ = orjson.loads(raw)
        assert alarm_["schema_version"] == 3
        assert alarm_["wind"] == winds[index].model_dump()  # the wind of the reading being folded
        event = AlarmEvent.model_validate_json(raw)  # built without validation: still the model's
        assert event.wind == winds[index] and event.model_dump_json().encode() == raw
    index = sent[0][0]
    without = [*clean, *dirty]
    without[index] = reading(55 - 10 * (index - 6), 150.0, None)
    assert [orjson.loads(raw)["wind"] for _, raw in await alarms_of(without)] == [None] * len(sent)

    # and the owner lists the grids upwind of that wind at dispatch
    policy = tmp_path / "policy.toml"
    policy.write_text('default = "s"\n[policies.s]\nfeedback_deadline_s = 100\n')
    owner = make_owner(policy)
    owner.upwind = Upwind(radius_km=5.0, sector_deg=60.0, min_speed=0.5)
    index, opened = next((i, raw) for i, raw in sent if orjson.loads(raw)["route"] == "grid")
    await owner.handle(on(ALARMS, opened, key=STATION))
    await owner.finish()
    (dispatched,) = events(owner)
    wind = winds[index]
    assert dispatched["upwind"] == list(DIRECTORY.upwind(STATION, wind.direction, 60.0, 5.0)) != []


def test_a_wind_speed_or_direction_must_be_a_number_in_range() -> None:
    assert math.isclose(Wind(speed=0.0, direction=359.9).direction, 359.9)
    with pytest.raises(ValueError):
        Wind(speed=1.0, direction=360.0)


def test_watch_names_the_upwind_grids_of_a_dispatch(tmp_path: Path) -> None:
    lineage = DIRECTORY.lineage(STATION)
    assert lineage is not None
    _, event = dispatch(alarm(), lineage, Policy(name="p"), T0, upwind=("L3-010908", "L3-010909"))
    names = TopicNames.of(load_settings(store="memory", data_dir=tmp_path))
    line = Formatter(names, ZoneInfo("UTC"), False).line(
        names.task_events, orjson.loads(event.model_dump_json())
    )
    assert line.endswith("upwind L3-010908, L3-010909 (pm25_1h_exceedance)"), line
