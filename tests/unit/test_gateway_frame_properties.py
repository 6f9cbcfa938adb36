"""Property tests of the HJ 212 framer over random and mutated byte streams cut at random places:
it never crashes, its buffer stays bounded, and no good frame is lost behind garbage or a broken
frame."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airgrid.gateway.frame import (
    HEADER,
    MAX_SEGMENT,
    TRAILER,
    Frame,
    Framer,
    Refused,
    crc_annex_a,
    crc_annex_a_reference,
    encode_frame,
)

PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# data segments as stations send them (printable ASCII), of any length the standard allows
segments = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=0, max_size=MAX_SEGMENT
).map(str.encode)
garbage = st.binary(min_size=1, max_size=300)


def feed_in_chunks(framer: Framer, stream: bytes, cuts: list[int]) -> list[Frame | Refused]:
    out: list[Frame | Refused] = []
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    for a, b in pairwise(points):
        out += framer.feed(stream[a:b])
        assert framer.buffered < HEADER + MAX_SEGMENT + TRAILER  # at most one frame in progress
    return out + list(framer.close())


def is_subsequence(wanted: list[bytes], got: list[bytes]) -> bool:
    it = iter(got)
    return all(any(w == g for g in it) for w in wanted)


@PROFILE
@given(st.binary(max_size=4000), st.lists(st.integers(min_value=0), max_size=20))
def test_random_bytes_never_crash_and_are_all_accounted_for(stream: bytes, cuts: list[int]) -> None:
    out = feed_in_chunks(Framer(), stream, cuts)
    for item in out:
        if isinstance(item, Refused):
            assert item.size > 0 and len(item.raw) <= min(item.size, 2048)
            assert item.code in {"framing", "length", "too_large", "crc", "truncated"}
    framed = sum(x.size for x in out if isinstance(x, Frame))
    refused = sum(x.size for x in out if isinstance(x, Refused) and x.code != "crc")
    assert framed + refused <= len(stream)  # junk and frames never overlap


@PROFILE
@given(st.binary(max_size=2000))
def test_the_fast_annex_a_crc_is_the_standard_one(data: bytes) -> None:
    assert crc_annex_a(data) == crc_annex_a_reference(data)


@PROFILE
@given(
    st.lists(st.tuples(st.one_of(st.none(), garbage), segments), min_size=1, max_size=8),
    st.lists(st.integers(min_value=0), max_size=30),
)
def test_no_good_frame_is_lost_after_garbage(
    parts: list[tuple[bytes | None, bytes]], cuts: list[int]
) -> None:
    stream = b"".join((junk or b"") + encode_frame(seg) for junk, seg in parts)
    out = feed_in_chunks(Framer(), stream, cuts)
    got = [x.segment for x in out if isinstance(x, Frame)]
    assert is_subsequence([seg for _, seg in parts], got)
    if all(junk is None for junk, _ in parts):
        assert got == [seg for _, seg in parts] and not [x for x in out if isinstance(x, Refused)]


@st.composite
def mutated(draw: st.DrawFn, frame: bytes) -> bytes:
    """One way a frame breaks on the wire: a byte changed, bytes lost, bytes added, cut short."""
    kind = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "crlf", "hashes"]))
    i = draw(st.integers(min_value=0, max_value=len(frame) - 1))
    if kind == "flip":
        return frame[:i] + bytes([draw(st.integers(0, 255))]) + frame[i + 1 :]
    if kind == "delete":
        return frame[:i] + frame[i + draw(st.integers(1, 40)) :]
    if kind == "insert":
        return frame[:i] + draw(st.binary(min_size=1, max_size=40)) + frame[i:]
    if kind == "crlf":
        return frame[:i] + b"\r\n" + frame[i:]
    if kind == "hashes":
        return frame[:i] + b"##" + frame[i:]
    return frame[:i]


@PROFILE
@given(st.data(), st.lists(st.tuples(segments, st.booleans()), min_size=1, max_size=8))
def test_every_untouched_frame_survives_its_broken_neighbours(
    data: st.DataObject, plan: list[tuple[bytes, bool]]
) -> None:
    pieces, intact = [], []
    for seg, broken in plan:
        wire = encode_frame(seg)
        if broken:
            pieces.append(data.draw(mutated(wire)))
        else:
            pieces.append(wire)
            intact.append(seg)
    stream = b"".join(pieces)
    cuts = data.draw(st.lists(st.integers(min_value=0), max_size=30))
    out = feed_in_chunks(Framer(), stream, cuts)
    assert is_subsequence(intact, [x.segment for x in out if isinstance(x, Frame)])
