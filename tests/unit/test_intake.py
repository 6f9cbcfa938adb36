"""Unit tests of airgrid.domain.intake: raw bytes to readings and feedback, or a reason why not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from airgrid.domain.intake import Limits, Rejection, parse_feedback, parse_reading
from airgrid.models.feedback import Feedback
from airgrid.models.readings import Reading

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LIMITS = Limits(max_bytes=4096, max_future=timedelta(seconds=300), max_age=timedelta(days=400))
STATIONS = {"ST001", "ST002"}


def known(station: str) -> bool:
    return station in STATIONS


def good_reading(**over: Any) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "station_id": "ST001",
        "observed_at": "2026-03-01T11:00:00+00:00",
        "interval_s": 3600,
        "values": {"pm25": 80.5, "co": 0.9},
        "flags": {"co": "M"},
        "wind": {"speed": 2.5, "direction": 315},
    } | over


def good_feedback(**over: Any) -> dict[str, Any]:
    return {
        "feedback_id": "fb-1",
        "task_id": "T-ST001-202603011100",
        "worker_id": "W-L3-010102-1",
        "action": "submit",
        "at": "2026-03-01T11:30:00+08:00",
        "findings": {"source_found": True, "source_type": "construction_dust", "photos": []},
        "comment": "covered the sand pile",
    } | over


def read(raw: bytes | None) -> Reading | Rejection:
    return parse_reading(raw, NOW, LIMITS, known)


def code_of(result: object) -> str:
    assert isinstance(result, Rejection), f"accepted: {result!r}"
    assert result.reason  # always a sentence to act on
    return result.code


# --- readings -----------------------------------------------------------------------------------


def test_valid_reading_is_accepted() -> None:
    r = read(orjson.dumps(good_reading()))
    assert isinstance(r, Reading)
    assert r.station_id == "ST001" and r.observed_at == datetime(2026, 3, 1, 11, tzinfo=UTC)
    assert r.values == {"pm25": 80.5, "co": 0.9} and r.valid_values() == {"pm25": 80.5}


def test_reading_with_an_offset_and_z_suffix_is_accepted() -> None:
    for stamp in ("2026-03-01T19:00:00+08:00", "2026-03-01T11:00:00Z"):
        r = read(orjson.dumps(good_reading(observed_at=stamp)))
        assert isinstance(r, Reading) and r.observed_at == datetime(2026, 3, 1, 11, tzinfo=UTC)


@pytest.mark.parametrize(("raw", "code"), [(None, "empty"), (b"", "empty")])
def test_empty(raw: bytes | None, code: str) -> None:
    assert code_of(read(raw)) == code
    assert code_of(parse_feedback(raw, 4096)) == code


def test_too_large_is_refused_unparsed() -> None:
    raw = b"x" * (LIMITS.max_bytes + 1)  # not JSON either: size is checked first
    result = read(raw)
    assert code_of(result) == "too_large"
    assert isinstance(result, Rejection) and "4097 bytes exceeds 4096" in result.reason
    padded = orjson.dumps(good_reading(station_id="ST001")).ljust(LIMITS.max_bytes, b" ")
    assert isinstance(read(padded), Reading)  # exactly at the limit is fine


@pytest.mark.parametrize(
    ("raw", "code", "needle"),
    [
        (b"{not json", "not_json", "not valid UTF-8 JSON"),
        (b"\xff\xfe\x00", "not_json", "UTF-8"),
        (b"[1, 2]", "not_object", "got list"),
        (b'"a string"', "not_object", "got str"),
        (b"42", "not_object", "got int"),
        (b"null", "not_object", "got NoneType"),
    ],
)
def test_not_a_json_object(raw: bytes, code: str, needle: str) -> None:
    result = read(raw)
    assert code_of(result) == code and isinstance(result, Rejection) and needle in result.reason


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_wrong_schema_version(version: object) -> None:
    result = read(orjson.dumps(good_reading(schema_version=version)))
    assert code_of(result) == "schema_version"
    assert isinstance(result, Rejection) and repr(version) in result.reason


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_nan_and_infinity_json_tokens_are_not_json(token: bytes) -> None:
    raw = orjson.dumps(good_reading(values={"pm25": 1.0})).replace(b"1.0", token)
    assert token in raw
    assert code_of(read(raw)) == "not_json"


@pytest.mark.parametrize("value", ["NaN", "nan", "Infinity", "-inf", "12", True, False, [1], None])
def test_concentrations_must_be_json_numbers(value: object) -> None:
    result = read(orjson.dumps(good_reading(values={"pm25": value})))
    assert code_of(result) == "invalid"
    assert isinstance(result, Rejection) and "values.pm25" in result.reason
    assert "valid number" in result.reason


@pytest.mark.parametrize("version", [True, 1.0, "1"])
def test_schema_version_must_be_the_integer_one(version: object) -> None:
    raw = orjson.dumps({**good_reading(), "schema_version": version})
    assert code_of(read(raw)) == "schema_version"


def test_negative_concentrations_reach_detection() -> None:
    """A negative value is an instrument fault for the `impossible` rule (kept out of averages,
    an operations alarm when it persists), not a reason to drop the reading's other values."""
    result = read(orjson.dumps(good_reading(values={"pm25": -1.0, "so2": -0.5, "no2": 3})))
    assert isinstance(result, Reading) and result.values == {"pm25": -1.0, "so2": -0.5, "no2": 3.0}


def test_zero_is_a_valid_concentration() -> None:
    assert isinstance(read(orjson.dumps(good_reading(values={"pm25": 0}))), Reading)


def test_future_beyond_skew_is_refused() -> None:
    ok = NOW + LIMITS.max_future
    assert isinstance(read(orjson.dumps(good_reading(observed_at=ok.isoformat()))), Reading)
    late = (ok + timedelta(seconds=1)).isoformat()
    result = read(orjson.dumps(good_reading(observed_at=late)))
    assert code_of(result) == "future"
    assert isinstance(result, Rejection) and "300 s ahead" in result.reason


def test_too_old_is_refused() -> None:
    edge = NOW - LIMITS.max_age
    assert isinstance(read(orjson.dumps(good_reading(observed_at=edge.isoformat()))), Reading)
    old = (edge - timedelta(seconds=1)).isoformat()
    result = read(orjson.dumps(good_reading(observed_at=old)))
    assert code_of(result) == "too_old"
    assert isinstance(result, Rejection) and "400 days" in result.reason


def test_unknown_station() -> None:
    result = read(orjson.dumps(good_reading(station_id="ST999")))
    assert result == Rejection("unknown_station", "station 'ST999' is not in the grid directory")


def test_naive_datetime_is_refused() -> None:
    result = read(orjson.dumps(good_reading(observed_at="2026-03-01T11:00:00")))
    assert code_of(result) == "invalid"
    assert isinstance(result, Rejection) and "observed_at" in result.reason and "timezone" in result.reason


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"station_id": 17}, "station_id"),
        ({"station_id": "has space"}, "station_id"),
        ({"observed_at": "yesterday"}, "observed_at"),
        ({"interval_s": "hour"}, "interval_s"),
        ({"interval_s": 0}, "interval_s"),
        ({"values": {}}, "values"),
        ({"values": {"dust": 1.0}}, "values.dust.[key]"),
        ({"values": {"pm25": [1]}}, "values.pm25"),
        ({"values": "pm25=80"}, "values"),
        ({"flags": {"pm25": "X"}}, "flags.pm25"),
        ({"wind": {"speed": 2, "direction": 360}}, "wind.direction"),
        ({"extra": 1}, "extra"),
    ],
)
def test_wrong_types_name_the_field(over: dict[str, Any], field: str) -> None:
    result = read(orjson.dumps(good_reading(**over)))
    assert code_of(result) == "invalid"
    assert isinstance(result, Rejection) and result.reason.startswith(f"{field}: ")


def test_many_errors_are_summarised() -> None:
    bad = {"station_id": 1, "observed_at": "x", "interval_s": "x", "values": 3, "flags": 4, "wind": 5, "z": 6}
    result = read(orjson.dumps(bad))
    assert code_of(result) == "invalid"
    assert isinstance(result, Rejection) and "(and 2 more)" in result.reason
    assert result.reason.count("; ") == 4


@given(st.binary(max_size=300))
def test_random_bytes_never_raise(raw: bytes) -> None:
    result = read(raw)
    assert isinstance(result, Reading | Rejection)
    assert isinstance(parse_feedback(raw, 4096), Feedback | Rejection)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.sampled_from(list(good_reading())), json_values, max_size=7))
def test_random_json_objects_never_raise(data: dict[str, Any]) -> None:
    result = read(orjson.dumps(good_reading() | data))
    assert isinstance(result, Reading | Rejection)
    if isinstance(result, Reading):
        assert result.station_id in STATIONS and all(v >= 0 for v in result.values.values())


# --- feedback -----------------------------------------------------------------------------------


def test_valid_feedback_is_accepted() -> None:
    fb = parse_feedback(orjson.dumps(good_feedback()), 4096)
    assert isinstance(fb, Feedback)
    assert fb.action == "submit" and fb.findings is not None
    assert fb.findings.source_type == "construction_dust"
    assert fb.at == datetime(2026, 3, 1, 3, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("over", "code", "field"),
    [
        ({"action": "fly"}, "invalid", "action"),
        ({"task_id": "task-1"}, "invalid", "task_id"),
        ({"feedback_id": ""}, "invalid", "feedback_id"),
        ({"at": "2026-03-01T11:30:00"}, "invalid", "at"),
        ({"findings": {"source_found": True, "source_type": "aliens"}}, "invalid", "findings.source_type"),
        ({"findings": {"source_found": True, "photos": ["not a url"]}}, "invalid", "findings.photos.0"),
        ({"worker_id": None}, "invalid", "worker_id"),
        ({"schema_version": 3}, "schema_version", ""),
    ],
)
def test_invalid_feedback(over: dict[str, Any], code: str, field: str) -> None:
    result = parse_feedback(orjson.dumps(good_feedback(**over)), 4096)
    assert code_of(result) == code
    assert isinstance(result, Rejection) and result.reason.startswith(field)


def test_feedback_size_limit_and_non_objects() -> None:
    raw = orjson.dumps(good_feedback())
    assert code_of(parse_feedback(raw, len(raw) - 1)) == "too_large"
    assert isinstance(parse_feedback(raw, len(raw)), Feedback)
    assert code_of(parse_feedback(b"[]", 4096)) == "not_object"
    assert code_of(parse_feedback(b"{", 4096)) == "not_json"
