"""The hostile-input generator (tests/reliability/hostile.py) keeps its word, and the validators
hold under it: for any seed, every hostile reading and feedback is refused by the pure intake with
a bounded code and the intake never raises; every hostile frame unit, sent between good frames to
the gateway's server (in-memory Kafka), makes exactly one dead letter with its class's code and
loses neither good frame."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airgrid.domain.intake import Rejection, parse_feedback, parse_reading
from airgrid.models.dlq import DeadLetter
from airgrid.sim.hj212 import data_frame
from tests.reliability.hostile import (
    DIRECTORY,
    LIMITS,
    REPLAY,
    SHANGHAI,
    Mutator,
    interleave,
    station_reading,
)
from tests.reliability.hostile_frames import FrameMutator
from tests.unit.test_gateway_server import NOW, reading, rig

CODES = {
    "empty",
    "too_large",
    "not_json",
    "not_object",
    "schema_version",
    "invalid",
    "future",
    "too_old",
    "unknown_station",
    "unknown_task",
    "unknown_worker",
    "wrong_grid",
    "not_reviewer",
    "wrong_key",
}
START = NOW - timedelta(days=3)
CLEAN = [
    (
        f"ST00{i % 5 + 1}".encode(),
        orjson.dumps(station_reading(f"ST00{i % 5 + 1}", START + timedelta(minutes=10 * i), 30.0)),
    )
    for i in range(50)
]
TASKS = {"T-ST001-202611250000": ("L3-010102", "L2-0101", "L1-01")}
CLEAN_FEEDBACK = [
    (
        b"ST001",
        orjson.dumps(
            {
                "schema_version": 1,
                "feedback_id": "fb-clean-1",
                "task_id": "T-ST001-202611250000",
                "worker_id": "W-L3-010102-1",
                "action": "acknowledge",
                "at": NOW.isoformat(),
            }
        ),
    )
]
known = DIRECTORY.stations.__contains__


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32))
def test_every_hostile_reading_is_refused_with_its_code(seed: int) -> None:
    m = Mutator(seed, NOW)
    for h in m.readings(300, CLEAN):
        if h.kind == REPLAY:
            assert (h.key, h.value) in CLEAN
            continue
        result = parse_reading(h.value, NOW, LIMITS, known)
        if isinstance(result, Rejection):
            assert result.code == h.code and result.code in CODES and result.reason
        else:  # valid, but under a key that is not its station's: the worker's refusal
            assert h.code == "wrong_key" and h.key != result.station_id.encode(), h


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32))
def test_every_hostile_feedback_is_refused_with_its_code(seed: int) -> None:
    m = Mutator(seed, NOW)
    for h in m.feedback(300, CLEAN_FEEDBACK, TASKS):
        if h.kind == REPLAY:
            assert (h.key, h.value) in CLEAN_FEEDBACK
            continue
        assert h.code in CODES, h
        if h.code in ("unknown_task", "unknown_worker", "wrong_grid", "not_reviewer"):
            continue  # structurally valid: the owner refuses it (the e2e test)
        result = parse_feedback(h.value, LIMITS.max_bytes)
        assert isinstance(result, Rejection) and result.code == h.code, (h.kind, h.value[:200])


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=600))
def test_the_intake_never_raises_on_bytes(raw: bytes) -> None:
    assert isinstance(parse_reading(raw, NOW, LIMITS, known), Rejection)
    assert isinstance(parse_feedback(raw, LIMITS.max_bytes), Rejection)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(
    doc=st.fixed_dictionaries(
        {"schema_version": st.just(1)},
        optional={"station_id": JSON, "observed_at": JSON, "values": JSON, "interval_s": JSON, "wind": JSON},
    )
)
def test_the_intake_never_raises_on_json_shaped_like_a_reading(doc: dict[str, object]) -> None:
    raw = orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS)
    result = parse_reading(raw, NOW, LIMITS, known)  # refused, or a valid reading: never an error
    assert isinstance(result, Rejection) or result.station_id in DIRECTORY.stations


def test_the_generator_is_seeded_and_replays_follow_their_original() -> None:
    a = Mutator(7, NOW).readings(500, CLEAN)
    b = Mutator(7, NOW).readings(500, CLEAN)
    assert a == b
    import random

    mixed = interleave(random.Random(1), CLEAN, a)
    sent: set[bytes] = set()
    for hostile, msg in mixed:
        if not hostile:
            assert isinstance(msg, tuple)
            sent.add(msg[1])
        elif msg.kind == REPLAY:  # type: ignore[union-attr]
            assert msg.value in sent  # type: ignore[union-attr]
    assert sum(1 for h, _ in mixed if not h) == len(CLEAN)


async def test_each_hostile_frame_makes_one_dead_letter_with_its_code() -> None:
    m = Mutator(11, NOW)
    units = FrameMutator(m).frames(300, ["ST001"], NOW - timedelta(hours=2))
    st1 = DIRECTORY.stations["ST001"]
    mn, pw = st1.mn or "", st1.pw.get_secret_value() if st1.pw else ""
    async with rig(max_refusals=4) as r:
        c = await r.connect()
        stream = b""
        for i, unit in enumerate(units):
            good = data_frame(mn, pw, reading(minute=i % 40), f"2026112800000{i:04d}", zone=SHANGHAI)
            stream += good + unit.data
        stream += data_frame(mn, pw, reading(minute=1), "20261128000009999", zone=SHANGHAI)

        acked: list[tuple[str, bytes | None, bytes]] = []

        async def ack_all() -> None:
            while True:
                acked.extend(r.sink.ack())
                await asyncio.sleep(0.01)

        acker = asyncio.create_task(ack_all())
        try:
            await c.send(stream)
            for _ in range(2000):  # the answers read meanwhile: a peer that reads none is cut off
                await c.answers(10**6, timeout=0.01)
                if r.metric("airgrid_gateway_frames_total", cn="2051", outcome="published") > len(units):
                    break
            await asyncio.sleep(0.3)
        finally:
            acker.cancel()
        acked.extend(r.sink.ack())
        letters = [DeadLetter.model_validate_json(v) for t, _, v in acked if t == "dlq"]
        codes = [x.reason_code for x in letters]
        assert len(letters) == len(units), [(u.kind, c) for u, c in zip(units, codes, strict=False)]
        for unit, letter in zip(units, letters, strict=True):
            assert letter.reason_code in unit.codes, (unit.kind, letter.reason_code, letter.reason)
        published = r.metric("airgrid_gateway_frames_total", cn="2051", outcome="published")
        assert published == len(units) + 1
