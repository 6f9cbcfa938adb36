"""Hostile HJ 212 frames for the gateway (issue 19, item 4): bad CRC, wrong data length, truncated,
oversized, garbage between frames, unknown MN, wrong password, unsupported CN or ST, other protocol
versions, broken headers, bad values and times, no values. Each unit, sent between two good frames,
makes exactly one refusal of its class (the framer's classes are checked here with the pure
``Framer``); seeded with the ``Mutator`` of ``hostile.py``, whose counts it adds to."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from airgrid.gateway.frame import Frame, Framer, Refused, encode_frame
from airgrid.models.readings import Reading
from airgrid.sim.hj212 import data_segment
from tests.reliability.hostile import DIRECTORY, SHANGHAI, Mutator

FRAME_CLASSES = (
    "bad_crc",
    "bad_length",
    "truncated",
    "oversized",
    "garbage",
    "unknown_mn",
    "bad_password",
    "wrong_cn",
    "wrong_st",
    "bad_version",
    "bad_header",
    "bad_value",
    "bad_time",
    "no_values",
)
# the refusal each frame class gets from the gateway (the framer's or the server's code)
FRAME_CODES: dict[str, frozenset[str]] = {
    "bad_crc": frozenset({"crc"}),
    "bad_length": frozenset({"length", "too_large", "framing"}),
    "truncated": frozenset({"length", "framing"}),
    "oversized": frozenset({"too_large"}),
    "garbage": frozenset({"framing"}),
    "unknown_mn": frozenset({"unknown_mn"}),
    "bad_password": frozenset({"bad_password"}),
    "wrong_cn": frozenset({"unsupported_cn"}),
    "wrong_st": frozenset({"unsupported_st"}),
    "bad_version": frozenset({"version"}),
    "bad_header": frozenset({"header"}),
    "bad_value": frozenset({"bad_value"}),
    "bad_time": frozenset({"bad_time"}),
    "no_values": frozenset({"no_values"}),
}


@dataclass(frozen=True, slots=True)
class HostileFrame:
    """Bytes a station sends that hold no reading, and the refusal codes the gateway may give."""

    kind: str
    data: bytes
    codes: frozenset[str]


class FrameMutator:
    """Hostile frame units drawn with a ``Mutator``'s generator, counted in its stats."""

    def __init__(self, mutator: Mutator) -> None:
        self.rng = mutator.rng
        self.stats = mutator.stats

    def frames(self, n: int, stations: Sequence[str], at: datetime) -> list[HostileFrame]:
        """``n`` hostile frame units. Each one, sent between two good frames, makes exactly one
        refusal (the framer's units are checked here with the pure ``Framer``)."""
        out = []
        for i in range(n):
            kind = self.rng.choice(FRAME_CLASSES)
            out.append(self._frame(kind, self.rng.choice(stations), at, i))
            self.stats.by_kind["frame:" + kind] += 1
            self.stats.by_code["frame:" + "|".join(sorted(FRAME_CODES[kind]))] += 1
        return out

    def _frame(self, kind: str, station: str, at: datetime, seq: int) -> HostileFrame:
        st = DIRECTORY.stations[station]
        mn, pw = st.mn or "", st.pw.get_secret_value() if st.pw else ""
        reading = Reading(
            station_id=station, observed_at=at, interval_s=600, values={"pm25": 30.0, "pm10": 50.0}
        )
        qn = f"{at.astimezone(UTC):%Y%m%d%H%M%S}{seq % 1000:03d}"
        seg = data_segment(mn, pw, reading, qn, zone=SHANGHAI)
        codes = FRAME_CODES[kind]
        for _ in range(50):
            data = self._frame_bytes(kind, seg, mn, pw, reading, qn)
            if kind in ("bad_crc", "bad_length", "truncated", "oversized", "garbage") and not one_refusal(
                data
            ):
                self.stats.redrawn += 1
                continue
            return HostileFrame(kind, data, codes)
        raise AssertionError(f"no hostile {kind} frame in 50 draws")

    def _frame_bytes(self, kind: str, seg: bytes, mn: str, pw: str, reading: Reading, qn: str) -> bytes:
        rng = self.rng
        good = encode_frame(seg)
        if kind == "bad_crc":
            crc = good[-6:-2]
            wrong = rng.choice([b"0000", b"FFFF", b"ZZZZ", b"12G4", bytes(reversed(crc))])
            if wrong == crc:
                wrong = b"%04X" % ((int(crc, 16) + 1) & 0xFFFF)
            return good[:-6] + wrong + b"\r\n"
        if kind == "bad_length":
            length = int(good[2:6])
            new = rng.choice([length - rng.randint(1, 20), length + rng.randint(1, 20), 1025, 9999, 0])
            head = b"%04d" % new if new >= 0 else b"-001"
            return b"##" + head + good[6:]
        if kind == "truncated":
            return good[: rng.randint(3, len(good) - 3)]
        if kind == "oversized":
            body = b"QN=1;ST=22;CN=2051;CP=&&" + bytes(
                rng.choice(b"ABCDEFabcdef0123456789=;,") for _ in range(2000)
            )
            return encode_frame(body + b"&&")
        if kind == "garbage":
            junk = bytes(b for b in rng.randbytes(rng.randint(1, 600)) if b != 0x23)
            return junk or b"garbage"
        if kind == "unknown_mn":
            unknown = rng.choice(["99999999UNKNOWN", "65010022A000000000000999", "0", "A" * 24])
            return encode_frame(seg.replace(f"MN={mn}".encode(), f"MN={unknown}".encode()))
        if kind == "bad_password":
            wrong = rng.choice(["", "000000", pw + "1", pw[::-1] if pw[::-1] != pw else "x", "' OR 1=1"])
            return encode_frame(seg.replace(f"PW={pw};".encode(), f"PW={wrong};".encode()))
        if kind == "wrong_cn":
            cn = rng.choice(["0000", "9999", "2052", "3015", "1234"])
            return encode_frame(seg.replace(b"CN=2051", b"CN=" + cn.encode()))
        if kind == "wrong_st":
            st = rng.choice(["21", "31", "32", "91", "99"])
            return encode_frame(seg.replace(b"ST=22", b"ST=" + st.encode()))
        if kind == "bad_version":
            flag = rng.choice([1, 13, 29, 61])  # versions 0 (HJ/T 212-2005), 3, 7, 15, asking an answer
            return encode_frame(seg.replace(b"Flag=5", b"Flag=%d" % flag))
        if kind == "bad_header":
            bad = rng.choice(
                [
                    seg.replace(b"ST=22;", b"ST=22;ST=22;"),
                    seg.replace(b"CN=2051", b"CN=20X1"),
                    seg.replace(b"QN=", b"QN=abc"),
                    seg.replace(b"Flag=5", b"Flag=999"),
                    seg.replace(b";MN=", b";NOEQUALS;MN="),
                    seg[:-2],  # CP without its closing &&
                ]
            )
            return encode_frame(bad)
        zone = SHANGHAI
        if kind == "bad_value":
            value = rng.choice(["abc", "1e999", "NaN", "-", "1,2", "0x10", "--5", ""])
            extra = f"a34004-Avg={value},a34004-Flag=N"
            seg2 = data_segment(mn, pw, reading, qn, zone=zone).replace(
                b"a34004-Avg=30,a34004-Flag=N", extra.encode()
            )
            return encode_frame(seg2)
        if kind == "bad_time":
            stamp = rng.choice(
                ["99999999999999", "20261345256161", "abc", "", "19000101000000", "30001128100000"]
            )
            start = (reading.observed_at - timedelta(seconds=600)).astimezone(zone)
            return encode_frame(
                seg.replace(f"DataTime={start:%Y%m%d%H%M%S}".encode(), f"DataTime={stamp}".encode())
            )
        if kind == "no_values":
            start = (reading.observed_at - timedelta(seconds=600)).astimezone(zone)
            body = f"QN={qn};ST=22;CN=2051;PW={pw};MN={mn};Flag=5;CP=&&DataTime={start:%Y%m%d%H%M%S}&&"
            return encode_frame(body.encode())
        raise ValueError(kind)


_PROBE = encode_frame(b"QN=20261128000000000;ST=22;CN=9015;MN=PROBE;Flag=4;CP=&&&&")


def one_refusal(data: bytes) -> bool:
    """``data`` between two good frames gives exactly one refusal and loses neither frame (the
    pure framer, fed as one read and in reads of 7 bytes)."""
    stream = _PROBE + data + _PROBE
    for chunks in ([stream], [stream[i : i + 7] for i in range(0, len(stream), 7)]):
        framer = Framer()
        items: list[Frame | Refused] = []
        for chunk in chunks:
            items += framer.feed(chunk)
        items += framer.close()
        kinds = [type(i).__name__ for i in items]
        if kinds != ["Frame", "Refused", "Frame"]:
            return False
    return True
