"""HJ 212 data segments to airgrid readings (airgrid.gateway.segment / decode / split): header
fields, codes, units, flags, wind, time labelling, split packets, and every content refusal. Each
reading built is held to the worker's own intake (parse_reading)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from airgrid.domain.intake import Limits, Rejection, parse_reading
from airgrid.gateway.decode import Decoded, Profile, merge_records, to_readings, unit_factor
from airgrid.gateway.segment import Segment, answer, mask_password, mn_of, parse_cp, parse_segment
from airgrid.gateway.split import Splits
from airgrid.models.readings import Reading

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)  # 14:00 in Shanghai
LIMITS = Limits(max_bytes=65536, max_future=timedelta(seconds=300), max_age=timedelta(days=400))
MINUTE = (
    "QN=20261128104000001;ST=22;CN=2051;PW=123456;MN=65010022A000000000000001;Flag=5;CP=&&"
    "DataTime=20261128103000;a34004-Avg=48.1,a34004-Min=40.0,a34004-Max=60.3,a34004-Flag=N;"
    "a34002-Avg=80.2,a34002-Flag=M;a21026-Avg=12,a21026-Flag=N;a21004-Avg=35.5,a21004-Flag=N;"
    "a21005-Avg=0.8,a21005-Flag=N;a05024-Avg=90,a05024-Flag=N;a01007-Avg=2.5,a01007-Flag=N;"
    "a01008-Avg=315,a01008-Flag=N;a01001-Avg=-3.2,a01001-Flag=N&&"
)


def seg(text: str) -> Segment:
    parsed = parse_segment(text.encode())
    assert isinstance(parsed, Segment), parsed
    return parsed


def decode(text: str, profile: Profile | None = None, now: datetime = NOW) -> Decoded | Rejection:
    s = seg(text)
    cp = parse_cp(s.cp)
    assert not isinstance(cp, Rejection)
    return to_readings("ST001", s.cn, cp[1], profile or Profile(zone=SHANGHAI), now, LIMITS)


def readings(text: str, profile: Profile | None = None) -> list[Reading]:
    out = decode(text, profile)
    assert isinstance(out, Decoded), out
    parsed = []
    for payload, _ in out.readings:
        r = parse_reading(payload, NOW, LIMITS, {"ST001"}.__contains__)  # the worker's intake
        assert isinstance(r, Reading), r
        parsed.append(r)
    return parsed


# --- the header ---------------------------------------------------------------------------------


def test_header_fields_and_flag_bits() -> None:
    s = seg(MINUTE)
    assert (s.qn, s.st, s.cn, s.mn, s.flag, s.version, s.wants_answer, s.split) == (
        "20261128104000001",
        "22",
        "2051",
        "65010022A000000000000001",
        5,
        1,
        True,
        False,
    )
    assert s.pw == "123456" and "123456" not in repr(s)
    assert seg(MINUTE.replace("Flag=5", "Flag=8")).version == 2  # the 2025 family
    assert not seg(MINUTE.replace("Flag=5;", "")).wants_answer  # no Flag: no answer asked


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("MN=65010022A000000000000001;", ""), "MN is missing"),
        (("MN=65010022A000000000000001", "MN=650;1"), "header field '1'"),
        (("CN=2051", "CN=20x1"), "CN '20x1' is not 4 digits"),
        (("ST=22", "ST=2"), "ST '2' is not 2 digits"),
        (("QN=20261128104000001", "QN=12ab"), "not a request number"),
        (("Flag=5", "Flag=300"), "Flag '300'"),
        (("Flag=5", "Flag=7"), "PNUM/PNO are missing"),
        (("Flag=5", "Flag=7;PNUM=2;PNO=3"), "out of order"),
        (("CN=2051;", "CN=2051;CN=2061;"), "appears twice"),
        (("a01001-Flag=N&&", "a01001-Flag=N&"), "CP does not end with &&"),
        (("Flag=5;", "Flag=5;RF=x;"), "RF 'x'"),
    ],
)
def test_malformed_headers_are_refused_as_header(change: tuple[str, str], message: str) -> None:
    parsed = parse_segment(MINUTE.replace(*change).encode())
    assert isinstance(parsed, Rejection) and parsed.code == "header" and message in parsed.reason


def test_split_and_backfill_markers() -> None:
    s = seg(MINUTE.replace("Flag=5;", "Flag=7;PNUM=3;PNO=2;RF=1;"))
    assert (s.split, s.pnum, s.pno, s.backfill) == (True, 3, 2, True)


def test_the_data_answer_echoes_qn_and_the_version() -> None:
    assert answer(seg(MINUTE), "9014") == (
        b"QN=20261128104000001;ST=91;CN=9014;PW=123456;MN=65010022A000000000000001;Flag=4;CP=&&&&"
    )
    assert b";Flag=8;" in answer(seg(MINUTE.replace("Flag=5", "Flag=9")), "9014")


def test_passwords_are_masked_and_mn_found_in_broken_segments() -> None:
    raw = b"QN=1;ST=22;CN=2051;PW=s3cret;MN=ABC123;pw=x&&NewPW=other;"
    assert mask_password(raw) == b"QN=1;ST=22;CN=2051;PW=***;MN=ABC123;pw=***&&NewPW=***;"
    assert mn_of(raw) == "ABC123" and mn_of(b"garbage") is None


# --- values ---------------------------------------------------------------------------------------


def test_minute_data_becomes_one_reading_ending_at_the_interval_end() -> None:
    (r,) = readings(MINUTE)
    # DataTime labels the start (the default): 10:30 + 10 minutes
    assert r.observed_at == datetime(2026, 11, 28, 10, 40, tzinfo=SHANGHAI) and r.interval_s == 600
    assert r.values == {"pm25": 48.1, "pm10": 80.2, "so2": 12.0, "no2": 35.5, "co": 0.8, "o3": 90.0}
    assert r.flags == {"pm10": "M"}  # N is left out; M keeps PM10 out of averages
    assert r.wind is not None and (r.wind.speed, r.wind.direction) == (2.5, 315.0)


def test_counted_leftovers() -> None:
    out = decode(MINUTE)
    assert isinstance(out, Decoded) and out.dropped == {"meteo": 1}  # a01001 temperature


@pytest.mark.parametrize(
    ("label", "cn", "interval", "end"),
    [
        ("start", "2051", 600, datetime(2026, 11, 28, 10, 40, tzinfo=SHANGHAI)),
        ("end", "2051", 600, datetime(2026, 11, 28, 10, 30, tzinfo=SHANGHAI)),
        ("start", "2061", 3600, datetime(2026, 11, 28, 11, 30, tzinfo=SHANGHAI)),
        ("start", "2011", 30, datetime(2026, 11, 28, 10, 30, tzinfo=SHANGHAI)),  # 2011: an instant
    ],
)
def test_time_labelling(label: str, cn: str, interval: int, end: datetime) -> None:
    text = MINUTE.replace("CN=2051", f"CN={cn}")
    if cn == "2011":
        text = text.replace("-Avg=", "-Rtd=")
    (r,) = readings(text, Profile(zone=SHANGHAI, time_label=label))  # type: ignore[arg-type]
    assert r.observed_at == end and r.interval_s == interval


def test_a_station_zone_other_than_shanghai() -> None:
    (r,) = readings(MINUTE, Profile(zone=ZoneInfo("Asia/Urumqi")))
    assert r.observed_at.utcoffset() == timedelta(hours=6)
    assert r.observed_at == datetime(2026, 11, 28, 4, 40, tzinfo=UTC)


def test_units_per_code() -> None:
    assert unit_factor("a21005", "mg/m3") == 1.0 and unit_factor("a21005", "ug/m3") == 0.001
    assert unit_factor("a34004", "mg/m³") == 1000.0
    assert unit_factor("a21026", "ppb") == pytest.approx(64.066 / 24.45)
    profile = Profile(zone=SHANGHAI, units={"a21005": "ug/m3", "a21026": "ppb"})
    (r,) = readings(MINUTE.replace("a21005-Avg=0.8", "a21005-Avg=800"), profile)
    assert r.values["co"] == 0.8 and r.values["so2"] == round(12 * 64.066 / 24.45, 3)
    for code, unit, message in (
        ("a34004", "ppb", "particulate"),
        ("a21026", "kg", "not one of"),
        ("a99", "ppb", "not a pollutant"),
    ):
        with pytest.raises(ValueError, match=message):
            unit_factor(code, unit)


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        (("a34004-Avg=48.1", "a34004-Avg=4x"), "bad_value", "a34004-Avg='4x' is not a finite number"),
        (("a34004-Avg=48.1", "a34004-Avg=nan"), "bad_value", "not a finite number"),
        (("a34004-Avg=48.1", "a34004-Avg=1e999"), "bad_value", "not a finite number"),
        (("a34004-Flag=N", "a34004-Flag=Q"), "bad_value", "not an HJ 212 data flag"),
        (("DataTime=20261128103000", "DataTime=20261131103000"), "bad_time", "no yyyyMMddHHmmss time"),
        (("DataTime=20261128103000", "DataTime=2026112810"), "bad_time", "no yyyyMMddHHmmss"),
        (("DataTime=20261128103000", "DataTime=20261128140000"), "bad_time", "ahead of the clock"),
        (("DataTime=20261128103000", "DataTime=20241128103000"), "bad_time", "older than 400 days"),
        (("DataTime=20261128103000;", ""), "bad_time", "without a DataTime"),
        (("a34004-Avg=48.1", "a34004-Avg48.1"), "bad_value", "not name=value"),
    ],
)
def test_content_refusals(change: tuple[str, str], code: str, message: str) -> None:
    text = MINUTE.replace(*change)
    s = seg(text)
    cp = parse_cp(s.cp)
    out = (
        cp
        if isinstance(cp, Rejection)
        else to_readings("ST001", s.cn, cp[1], Profile(zone=SHANGHAI), NOW, LIMITS)
    )
    assert isinstance(out, Rejection) and out.code == code and message in out.reason


def test_a_message_without_pollutants_is_no_values() -> None:
    text = "ST=22;CN=2051;MN=A1;CP=&&DataTime=20261128103000;a01007-Avg=2,a01008-Avg=10&&"
    out = decode(text)
    assert isinstance(out, Rejection) and out.code == "no_values"


def test_a_nonexistent_local_time_is_bad_time() -> None:
    berlin = Profile(zone=ZoneInfo("Europe/Berlin"), time_label="end")
    text = MINUTE.replace("DataTime=20261128103000", "DataTime=20260329023000")  # DST gap
    out = decode(text, berlin)
    assert isinstance(out, Rejection) and out.code == "bad_time"


def test_impossible_or_flagged_wind_is_dropped_and_counted() -> None:
    for change in (
        ("a01007-Avg=2.5", "a01007-Avg=-1"),
        ("a01008-Flag=N", "a01008-Flag=D"),
        ("a01007-Avg=2.5,", ""),
    ):
        out = decode(MINUTE.replace(*change))
        assert isinstance(out, Decoded) and out.dropped["wind"] == 1
        assert b'"wind"' not in out.readings[0][0]
    (r,) = readings(MINUTE.replace("a01008-Avg=315", "a01008-Avg=360"))
    assert r.wind is not None and r.wind.direction == 0.0


def test_negative_concentrations_pass_to_the_worker_s_impossible_rule() -> None:
    (r,) = readings(MINUTE.replace("a34004-Avg=48.1", "a34004-Avg=-5"))
    assert r.values["pm25"] == -5.0


# --- split packets --------------------------------------------------------------------------------


def test_records_merge_across_packets_by_datatime() -> None:
    p1 = parse_cp("DataTime=20261128103000;a34004-Avg=48.1,a34004-Flag=N")
    p2 = parse_cp("a34002-Avg=80.2;DataTime=20261128104000;a34004-Avg=50")  # continues, then a new one
    p3 = parse_cp("DataTime=20261128103000;a21026-Avg=12")
    assert not isinstance(p1, Rejection) and not isinstance(p2, Rejection) and not isinstance(p3, Rejection)
    merged = merge_records([p1[1], p2[1], p3[1]])
    assert merged == [
        (
            "20261128103000",
            [
                ("a34004", "Avg", "48.1"),
                ("a34004", "Flag", "N"),
                ("a34002", "Avg", "80.2"),
                ("a21026", "Avg", "12"),
            ],
        ),
        ("20261128104000", [("a34004", "Avg", "50")]),
    ]
    lone = parse_cp("a34002-Avg=80.2")
    assert not isinstance(lone, Rejection)
    assert isinstance(merge_records([lone[1]]), Rejection)


def test_splits_complete_in_any_order_and_replace_resent_packets() -> None:
    splits: Splits[str] = Splits(max_sets=2, timeout_s=60)
    key = ("MN1", "2051", 3)
    assert splits.add(key, 2, "b", 0.0) == (None, [])
    assert splits.add(key, 2, "b2", 1.0) == (None, [])  # sent again: replaces
    assert splits.add(key, 1, "a", 2.0) == (None, [])
    assert splits.add(key, 3, "c", 3.0) == (["a", "b2", "c"], [])
    assert len(splits) == 0


def test_splits_are_bounded_in_number_and_age() -> None:
    splits: Splits[str] = Splits(max_sets=2, timeout_s=60)
    splits.add(("A", "2051", 2), 1, "a1", 0.0)
    splits.add(("B", "2051", 2), 1, "b1", 10.0)
    assert splits.add(("C", "2051", 2), 1, "c1", 20.0) == (None, [["a1"]])  # the oldest goes
    assert splits.expire(69.0) == []
    assert splits.expire(70.0) == [["b1"]]
    assert splits.drain() == [["c1"]] and len(splits) == 0
