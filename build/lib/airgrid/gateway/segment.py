"""The data segment of an HJ 212 frame: its header fields (QN, ST, CN, PW, MN, Flag, PNUM, PNO)
and its command parameters (CP), and the answers a platform sends back. Pure.

``Flag`` holds ``version << 2 | D << 1 | A``: version 1 is HJ 212-2017, 2 the 2025 family (the
fields this gateway uses are the same in both), D marks a split packet (PNUM/PNO follow), A asks
for an answer. Inside CP, ``DataTime=yyyyMMddHHmmss`` starts a record and ``code-Field=value``
pairs follow, grouped by ``;`` and separated by ``,``.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from airgrid.domain.intake import Rejection

VERSIONS = {1: "2017", 2: "2025"}
_PASSWORD = re.compile(rb"(?i)(PW=)[^;,&\r\n]*")
# name=value items separated by ; and , (possessive: linear time on any input, no backtracking)
_CP_SHAPE = re.compile(r"(?:[;,]*+[^=;,]++=[^;,]*+)*+[;,]*+")
_CP_ITEM = re.compile(r"([^=;,]+)=([^;,]*)")


class Segment(NamedTuple):
    """A parsed data segment. ``pw`` never shows in a repr (it would reach logs)."""

    qn: str | None
    st: str
    cn: str
    mn: str
    flag: int | None
    pnum: int | None
    pno: int | None
    cp: str
    backfill: bool
    pw: str | None = None

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in zip(self._fields[:-1], self[:-1], strict=True))
        return f"Segment({shown}, pw=***)"

    @property
    def version(self) -> int:
        """1 (2017) when Flag is absent: such devices never ask for an answer either."""
        return 1 if self.flag is None else self.flag >> 2

    @property
    def wants_answer(self) -> bool:
        return self.flag is not None and bool(self.flag & 1)

    @property
    def split(self) -> bool:
        return self.pnum is not None and self.flag is not None and bool(self.flag & 2)


Field = tuple[str, str, str]  # (code, field, value): ("a34004", "Avg", "48.1")
Record = tuple[str | None, list[Field]]  # (DataTime, its fields in order)


def mn_of(raw: bytes) -> str | None:
    """The MN of a data segment that did not parse, if one can be read (for the dead letter)."""
    m = re.search(rb"(?:^|;)MN=([0-9A-Za-z]{1,24})(?:;|$)", raw)
    return m.group(1).decode() if m else None


def mask_password(raw: bytes) -> bytes:
    """``raw`` with the value of every ``PW=`` field replaced by ``***`` (dead letters, logs)."""
    return _PASSWORD.sub(rb"\1***", raw)


def parse_segment(raw: bytes) -> Segment | Rejection:
    """The header fields and the raw CP of a data segment, or why it is no valid segment."""
    text = raw.decode("latin-1")
    at = text.find("CP=&&")
    if at < 0:
        head, cp = text, ""
    else:
        if len(text) < at + 7 or not text.endswith("&&"):
            return Rejection("header", "CP does not end with &&")
        head, cp = text[:at], text[at + 5 : -2]
    fields: dict[str, str] = {}
    for part in head.split(";"):
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep:
            return Rejection("header", f"header field {part[:40]!r} is not NAME=value")
        if name in fields:
            return Rejection("header", f"header field {name} appears twice")
        fields[name] = value
    mn = fields.get("MN")
    if mn is None or not (0 < len(mn) <= 24 and mn.isascii() and mn.isalnum()):
        return Rejection("header", "MN is missing or not 1 to 24 letters and digits")
    cn, st = fields.get("CN", ""), fields.get("ST", "")
    if len(cn) != 4 or not cn.isdigit():
        return Rejection("header", f"CN {cn[:20]!r} is not 4 digits")
    if len(st) != 2 or not st.isdigit():
        return Rejection("header", f"ST {st[:20]!r} is not 2 digits")
    qn = fields.get("QN")
    if qn is not None and not (0 < len(qn) <= 20 and qn.isascii() and qn.isdigit()):
        return Rejection("header", f"QN {qn[:30]!r} is not a request number (digits)")
    flag = _small_int(fields.get("Flag"), 255)
    if flag == -1:
        return Rejection("header", f"Flag {fields['Flag'][:20]!r} is not a number from 0 to 255")
    pnum, pno = _small_int(fields.get("PNUM"), 9999), _small_int(fields.get("PNO"), 9999)
    split = flag is not None and flag & 2
    if split and (pnum is None or pno is None or pnum < 1 or not 1 <= pno <= pnum):
        return Rejection("header", "Flag marks a split packet but PNUM/PNO are missing or out of order")
    rf = fields.get("RF")
    if rf not in (None, "0", "1"):
        return Rejection("header", f"RF {rf[:20]!r} is not 0 or 1")
    pw = fields.get("PW")
    if pw is not None and len(pw) > 64:
        return Rejection("header", "PW is longer than 64 characters")
    return Segment(
        qn=qn,
        st=st,
        cn=cn,
        mn=mn,
        flag=flag,
        pnum=pnum if pnum != -1 else None,
        pno=pno if pno != -1 else None,
        cp=cp,
        backfill=rf == "1",
        pw=pw,
    )


def _small_int(value: str | None, most: int) -> int | None:
    """None when absent, -1 when not a number in 0..most."""
    if value is None:
        return None
    if not value.isdigit() or len(value) > 4 or int(value) > most:
        return -1
    return int(value)


def parse_cp(cp: str) -> tuple[dict[str, str], list[Record]] | Rejection:
    """CP as parameters (names without ``-``, such as ``RF`` or ``PolId``) and records: each
    ``DataTime`` starts one; values before any ``DataTime`` form a record without one."""
    if not _CP_SHAPE.fullmatch(cp):
        bad = next(x for x in cp.replace(";", ",").split(",") if x and ("=" not in x or x.startswith("=")))
        return Rejection("bad_value", f"CP field {bad[:40]!r} is not name=value")
    params: dict[str, str] = {}
    records: list[Record] = []
    current: list[Field] | None = None
    for name, value in _CP_ITEM.findall(cp):
        code, dash, sub = name.partition("-")
        if dash:
            if current is None:
                current = []
                records.append((None, current))
            current.append((code, sub, value))
        elif name == "DataTime":
            current = []
            records.append((value, current))
        else:
            params[name] = value
    return params, records


def answer(seg: Segment, cn: str, cp: str = "") -> bytes:
    """A platform's answer to ``seg``: same QN, MN and PW, ST 91 (system interaction), the
    request's protocol version and no answer asked (HJ 212-2017: ``...;Flag=4;CP=&&&&``)."""
    pw = f"PW={seg.pw};" if seg.pw is not None else ""
    return f"QN={seg.qn};ST=91;CN={cn};{pw}MN={seg.mn};Flag={seg.version << 2};CP=&&{cp}&&".encode("latin-1")


def request(qn: str, seg: Segment, cn: str, cp: str) -> bytes:
    """A platform's own request to a station (CN 1012 sets its clock), asking for its answers."""
    pw = f"PW={seg.pw};" if seg.pw is not None else ""
    return f"QN={qn};ST={seg.st};CN={cn};{pw}MN={seg.mn};Flag={seg.version << 2 | 1};CP=&&{cp}&&".encode(
        "latin-1"
    )
