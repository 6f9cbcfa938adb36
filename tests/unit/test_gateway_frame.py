"""HJ 212 framing (airgrid.gateway.frame): the Annex A vector, encoding, and a TCP stream as it
really arrives: split reads, several frames per read, garbage, broken and oversized frames."""

from __future__ import annotations

import pytest

from airgrid.gateway.frame import (
    Frame,
    Framer,
    Refused,
    crc_annex_a,
    crc_annex_a_reference,
    crc_modbus,
    encode_frame,
)

# HJ 212-2017 Annex A's worked example
VECTOR = (
    b"QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&"
)
DATA = (
    b"QN=20261128100000001;ST=22;CN=2051;PW=123456;MN=65010022A000000000000001;Flag=5;"
    b"CP=&&DataTime=20261128094000;a34004-Avg=48.1,a34004-Flag=N;a34002-Avg=80.2,a34002-Flag=N&&"
)


def modbus_reference(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def frames_of(out: list[Frame | Refused]) -> list[bytes]:
    return [x.segment for x in out if isinstance(x, Frame)]


def refused_of(out: list[Frame | Refused]) -> list[str]:
    return [x.code for x in out if isinstance(x, Refused)]


def test_the_annex_a_vector_and_its_modbus_cousin() -> None:
    assert crc_annex_a(VECTOR) == crc_annex_a_reference(VECTOR) == 0x1C80
    assert crc_modbus(VECTOR) == modbus_reference(VECTOR) == 0x0759
    assert encode_frame(VECTOR) == b"##0101" + VECTOR + b"1C80\r\n"
    assert encode_frame(VECTOR, "modbus").endswith(b"0759\r\n")


@pytest.mark.parametrize("size", [0, 1, 2, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1023, 1024])
def test_fast_crcs_equal_the_definitions_at_every_alignment(size: int) -> None:
    data = bytes((i * 37 + 11) % 256 for i in range(size))
    assert crc_annex_a(data) == crc_annex_a_reference(data)
    assert crc_modbus(data) == modbus_reference(data)


def test_a_frame_round_trips_and_reports_its_size() -> None:
    wire = encode_frame(DATA)
    (frame,) = Framer().feed(wire)
    assert frame == Frame(DATA, "annex-a", len(wire))


def test_partial_frames_across_reads_byte_by_byte() -> None:
    framer = Framer()
    wire = encode_frame(DATA) + encode_frame(VECTOR)
    out: list[Frame | Refused] = []
    for i in range(len(wire)):
        out += framer.feed(wire[i : i + 1])
        assert framer.buffered <= 6 + 1024 + 6
    assert frames_of(out) == [DATA, VECTOR]
    assert framer.buffered == 0 and framer.close() == []


def test_several_frames_in_one_read() -> None:
    wire = b"".join(encode_frame(DATA.replace(b"48.1", b"%d" % i)) for i in range(50))
    out = Framer().feed(wire)
    assert len(frames_of(out)) == 50 and refused_of(out) == []


def test_garbage_between_good_frames_is_refused_once_and_loses_nothing() -> None:
    wire = encode_frame(DATA) + b"\x00\xffnoise#" + encode_frame(VECTOR)
    out = Framer().feed(wire)
    assert frames_of(out) == [DATA, VECTOR]
    (bad,) = [x for x in out if isinstance(x, Refused)]
    assert (bad.code, bad.raw, bad.size) == ("framing", b"\x00\xffnoise#", 8)


def test_a_lone_hash_before_a_frame_does_not_hide_it() -> None:
    out = Framer().feed(b"#" + encode_frame(DATA))
    assert frames_of(out) == [DATA] and refused_of(out) == ["framing"]


def test_a_truncated_frame_followed_by_a_good_one_is_decided_without_waiting() -> None:
    """The broken frame announces 1000 bytes; the good frame behind it is answered at once."""
    framer = Framer()
    broken = b"##1000" + DATA[:40]
    out = framer.feed(broken + encode_frame(VECTOR))
    assert frames_of(out) == [VECTOR]
    (bad,) = [x for x in out if isinstance(x, Refused)]
    assert bad.code == "length" and bad.raw == broken and "announces 1000 bytes" in bad.reason


def test_a_wrong_length_is_refused_and_the_next_frame_found() -> None:
    wire = encode_frame(DATA)
    shorter = wire[:2] + b"%04d" % (len(DATA) - 3) + wire[6:]
    out = Framer().feed(shorter + encode_frame(VECTOR))
    assert frames_of(out) == [VECTOR] and refused_of(out) == ["length"]


def test_an_oversize_length_is_refused_without_buffering_it() -> None:
    framer = Framer(copy_limit=100)
    out = framer.feed(b"##2000" + b"x" * 1500)
    assert out == [] and framer.buffered == 0  # refused bytes are not kept
    out = framer.feed(b"x" * 500 + b"ABCD\r\n" + encode_frame(DATA))
    assert frames_of(out) == [DATA]
    (bad,) = [x for x in out if isinstance(x, Refused)]
    assert bad.code == "too_large" and bad.size == 6 + 2000 + 6 and bad.raw == b"##2000" + b"x" * 94
    assert "exceeds the limit of 1024" in bad.reason


def test_a_larger_limit_admits_larger_frames() -> None:
    big = DATA + b"x" * 1500
    framer = Framer()
    assert framer.feed(encode_frame(big)) == []  # refused once the stream says where it ends
    assert [r.code for r in framer.close()] == ["too_large"]
    assert frames_of(Framer(max_segment=4096).feed(encode_frame(big))) == [big]


def test_a_bad_crc_is_refused_alone_and_the_next_frame_kept() -> None:
    wire = encode_frame(DATA)
    bad = wire[:-6] + b"0000\r\n"
    out = Framer().feed(bad + encode_frame(VECTOR))
    assert frames_of(out) == [VECTOR]
    (refused,) = [x for x in out if isinstance(x, Refused)]
    assert refused.code == "crc" and refused.raw == bad and refused.size == len(bad)
    assert "matches neither Annex A" in refused.reason


def test_crc_not_hex_is_a_crc_refusal() -> None:
    wire = encode_frame(DATA)
    out = Framer().feed(wire[:-6] + b"zz00\r\n")
    assert refused_of(out) == ["crc"]


def test_modbus_is_accepted_in_any_mode_and_refused_in_annex_a_mode() -> None:
    wire = encode_frame(VECTOR, "modbus")
    assert Framer(crc="any").feed(wire) == [Frame(VECTOR, "modbus", len(wire))]
    (refused,) = Framer(crc="annex-a").feed(wire)
    assert isinstance(refused, Refused) and refused.code == "crc"
    assert "CRC-16/MODBUS, not accepted, gives 0759" in refused.reason


def test_a_good_frame_inside_a_broken_one_is_found() -> None:
    """A frame cut short by a new frame: the new frame sits inside the old one's announced span."""
    first = encode_frame(DATA)
    cut = first[:30]  # no CR LF: the announced span swallows the next frame
    out = Framer().feed(cut + encode_frame(VECTOR) + encode_frame(DATA))
    assert frames_of(out) == [VECTOR, DATA]
    assert refused_of(out) == ["length"]


def test_close_refuses_a_frame_cut_by_the_end_of_the_stream() -> None:
    framer = Framer()
    assert framer.feed(encode_frame(DATA)[:50]) == []
    (refused,) = framer.close()
    assert refused.code == "truncated" and refused.size == 50


def test_endless_garbage_closes_the_stream_with_one_refusal() -> None:
    framer = Framer(max_junk=1000)
    out = framer.feed(b"z" * 600) + framer.feed(b"z" * 600)
    (refused,) = out
    assert isinstance(refused, Refused) and refused.fatal and refused.code == "framing"
    assert refused.size == 1200 and refused.raw == b"z" * 1200
    assert framer.dead and framer.feed(encode_frame(DATA)) == []


def test_contiguous_junk_is_one_refusal_named_by_its_first_specific_cause() -> None:
    out = Framer().feed(b"\r\n##5000zz##x##y" + encode_frame(DATA))
    assert frames_of(out) == [DATA]
    assert refused_of(out) == ["too_large"]


def test_encoding_refuses_a_segment_longer_than_four_digits() -> None:
    with pytest.raises(ValueError, match="4-digit"):
        encode_frame(b"x" * 10_000)
