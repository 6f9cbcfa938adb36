"""The bench peers' shared job (bench/peers/job.py) and the checks bench.run applies to them."""

from __future__ import annotations

import random
from pathlib import Path

import orjson

from bench import common as c
from bench.peers import job
from bench.peers.phase import check, misplaced, ratios

HOUR = 1_790_000_000 // 3600 * 3600  # an hour start (epoch s)


def reading(pm25: float, ts: float, station: str = "ST-1") -> bytes:
    return c.reading(station, ts, pm25, random.Random(1))


def test_parse_reads_the_hour_the_interval_starts_in() -> None:
    r = job.parse(reading(30.0, HOUR + 3600))  # closes the interval 00:50-01:00
    assert r is not None
    assert (r.station_id, r.hour, r.pm25) == ("ST-1", HOUR, 30.0)
    assert job.parse(reading(30.0, HOUR + 600)).hour == HOUR  # type: ignore[union-attr]


def test_parse_rejects_what_is_not_a_reading() -> None:
    good = orjson.loads(reading(30.0, HOUR + 600))
    for broken in (
        b"not json",
        b"[]",
        orjson.dumps({**good, "schema_version": 2}),
        orjson.dumps({**good, "values": {"pm10": 1.0}}),
        orjson.dumps({**good, "observed_at": "2026-11-28T10:00:00"}),  # no offset
        orjson.dumps({**good, "interval_s": 0}),
    ):
        assert job.parse(broken) is None
        assert job.process(None, broken) == (None, None)


def test_an_alarm_opens_once_when_the_hourly_mean_crosses() -> None:
    state = None
    alarms = []
    for i, pm25 in enumerate([30, 30, 130, 120, 120, 120]):  # mean 30, 30, 63, 77.5 (crosses), ...
        state, alarm = job.process(state, reading(pm25, HOUR + (i + 1) * 600))
        alarms.append(alarm)
    assert [a is not None for a in alarms] == [False, False, False, True, False, False]
    assert orjson.loads(alarms[3]) == {  # type: ignore[arg-type]
        "station_id": "ST-1",
        "hour": HOUR,
        "pm25_mean": 77.5,
        "readings": 4,
        "reading_observed_at": c.iso(HOUR + 2400),
    }
    # the next hour starts a new mean; staying above opens nothing, falling below and rising does
    state, alarm = job.process(state, reading(120, HOUR + 3600 + 600))
    assert alarm is None
    state, alarm = job.process(state, reading(30, HOUR + 7200 + 600))
    assert alarm is None
    state, alarm = job.process(state, reading(100, HOUR + 10800 + 600))
    assert alarm is not None


def test_a_reading_of_a_closed_hour_is_left_out() -> None:
    state, _ = job.process(None, reading(30, HOUR + 3600 + 600))
    later, alarm = job.process(state, reading(500, HOUR + 600))
    assert (later, alarm) == (state, None)


def test_expected_counts_the_bench_backlog() -> None:
    exp = job.Expected()
    items = list(exp.tap(c.backlog(1200, 100)))
    assert len(items) == 1200
    s = exp.summary()
    assert s["readings"] == 1200 and s["rejected"] == 0 and s["stations"] == 100
    # 12 readings a station = 2 hours; a station's one high hour in 12 falls in them for 1 in 6
    assert 0 < s["alarms"] < 100


def test_tally_writes_its_result_once_when_done(tmp_path: Path) -> None:
    out = str(tmp_path / "r.json")
    t = job.Tally(2, out)
    t.add({"x": 1}, None)
    t.finish_if_done()
    t.add(None, b"alarm")
    t.finish_if_done()
    doc = orjson.loads(Path(out).read_bytes())
    assert (doc["count"], doc["alarms"], doc["rejected"]) == (2, 1, 1)
    assert doc["last"] >= doc["first"] > 0


def test_check_names_every_shortfall() -> None:
    expected = {"readings": 10, "rejected": 0, "alarms": 2, "stations": 3}
    done = {"count": 10, "rejected": 0, "alarms": 2}
    assert check(done, expected, 2, 3) == "ok"
    msg = check({**done, "count": 9, "changelog_keys_misplaced": 1}, expected, 1, 2)
    assert msg.startswith("FAILED: processed 9 of 10 readings")
    assert "1 alarms on its topic" in msg and "2 changelog records for 3 stations" in msg
    assert "1 stations is on another partition" in msg


def test_misplaced_state_is_counted_per_station() -> None:
    readings = {b"a": {0}, b"b": {1}}
    assert misplaced({b"a": {0}, b"b": {1}}, readings) == 0
    assert misplaced({b"a": {0, 2}, b"b": {3}}, readings) == 2
    # Quix Streams: the message key, b"|", the state's own key
    assert misplaced({b'a|"station"': {0}, b'b|"station"': {1}}, readings, b"|") == 0
    assert misplaced({b'a|"station"': {1}}, readings, b"|") == 1


def test_ratios_over_raw_noop_and_batched_faust() -> None:
    phases = {
        "raw_aiokafka": {"readings_per_s": 100_000},
        "noop_faust": {"readings_per_s": 10_000},
        "peer_faust_batched": {"readings_per_s": 2_000},
        "peer_quix": {"readings_per_s": 40_000},
    }
    r = ratios(phases)
    assert r["peer_quix"] == {
        "readings_per_s": 40_000,
        "over_raw": 0.4,
        "over_noop_faust": 4.0,
        "over_faust_batched": 20.0,
    }
    assert "full_pipeline" not in r
    assert ratios({"raw_aiokafka": {"readings_per_s": 5}})["raw_aiokafka"]["over_faust_batched"] is None
