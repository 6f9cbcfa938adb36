"""The gateway's TCP server: one asyncio protocol object per station connection.

Each frame is checked (CRC, header, version, MN, password), decoded, and its readings handed to
the publisher; the HJ 212 data answer (CN 9014, the frame's QN) is written only when Kafka has
acknowledged every reading of the frame. A station that gets no answer sends again: a gateway
killed between the two loses nothing, and the worker recognises the repeat as a duplicate.
Whatever becomes no reading goes to ``readings.dlq`` (bounded copy, passwords masked, the peer,
the MN when known, a reason code). Limits hold slow or hostile peers: connections, idle time,
frames awaiting Kafka per connection and in all, refusals and junk in a row, unread answers.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

from airgrid.domain.directory import Directory
from airgrid.domain.intake import Limits, Rejection
from airgrid.gateway.decode import DATA_CNS, Decoded, merge_records, to_readings
from airgrid.gateway.frame import Frame, Framer, Refused, encode_frame
from airgrid.gateway.metrics import GatewayMetrics
from airgrid.gateway.publisher import Sink
from airgrid.gateway.segment import (
    VERSIONS,
    Record,
    Segment,
    answer,
    mask_password,
    mn_of,
    parse_cp,
    parse_segment,
    request,
)
from airgrid.gateway.settings import GatewaySettings, Profiles
from airgrid.gateway.split import Splits
from airgrid.models.codecs import encode, text_of
from airgrid.models.dlq import DeadLetter

log = logging.getLogger(__name__)

ANSWER_CNS = frozenset({"9011", "9012", "9013", "9014"})  # answers: a platform never answers them
NOTIFY_CNS = frozenset({"9015", "1013", "1014", "1001"})  # heartbeat, clock / key requests, hardware id
# uploads a platform acknowledges that carry no pollutant data for airgrid
OTHER_UPLOADS = frozenset({"1011", "1061", "1063", "2013", "2021", "2041", "2081", "3020"})
# refusals of an authenticated frame's content: the dead letter holds it, so once Kafka has that,
# the frame is answered (otherwise the station would send it again and again, in vain)
ANSWERED_REFUSALS = frozenset({"bad_value", "bad_time", "no_values"})
Packet = tuple[Frame, Segment]


class Gateway:
    """Shared state of the server: settings, station identities, publisher, metrics, connections."""

    def __init__(
        self,
        *,
        gs: GatewaySettings,
        directory: Directory,
        profiles: Profiles,
        limits: Limits,
        publisher: Sink,
        metrics: GatewayMetrics,
        readings_topic: str,
        dlq_topic: str,
        clock: Callable[[], datetime],
    ) -> None:
        self.gs = gs
        self.profiles = profiles
        self.limits = limits
        self.publisher = publisher
        self.metrics = metrics
        self.readings_topic = readings_topic
        self.dlq_topic = dlq_topic
        self.clock = clock
        # MN -> (station id, its key on Kafka, its password or None)
        self.by_mn: dict[str, tuple[str, bytes, bytes | None]] = {
            mn: (st.id, st.id.encode(), st.pw.get_secret_value().encode() if st.pw else None)
            for mn, st in directory.by_mn.items()
        }
        self.conns: set[Connection] = set()
        metrics.connections.set_function(lambda: len(self.conns))
        self.server: asyncio.Server | None = None
        self.accepting = True
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: Connection(self),
            self.gs.listen_host,
            self.gs.listen_port,
            backlog=4096,
            reuse_address=True,
        )
        self._sweeper = asyncio.create_task(self._sweep_forever())
        return self.server

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.sweep(time.monotonic())
            self.metrics.flush()

    def sweep(self, now: float) -> None:
        """Close idle connections; refuse split messages that stopped halfway."""
        idle = self.gs.idle_timeout_seconds
        for conn in list(self.conns):
            if now - conn.last >= idle:
                conn.close("idle")
            elif conn.splits is not None and len(conn.splits):
                for packets in conn.splits.expire(now):
                    conn.refuse_split(packets, "no packet for split_timeout_seconds")

    def resume_all(self) -> None:
        """Kafka caught up: let paused connections read again."""
        for conn in list(self.conns):
            conn.maybe_resume()

    async def close(self, grace: float, drain: Callable[[float], Any] | None = None) -> None:
        """Stop accepting, stop reading, give readings in flight ``grace`` seconds to be
        acknowledged (and answered), then close every connection."""
        self.accepting = False
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.server is not None:
            self.server.close()
        for conn in list(self.conns):
            conn.stop_reading()
        if drain is not None:
            await drain(grace)
        for conn in list(self.conns):
            conn.close("shutdown")
        await asyncio.sleep(0)


class _Waiter:
    """One message's readings on their way to Kafka; the answer goes when every one is in."""

    __slots__ = ("answers", "cn", "conn", "count", "ok", "readings", "remaining")

    def __init__(self, conn: Connection, cn: str, answers: list[bytes], readings: int, count: int) -> None:
        self.conn = conn
        self.cn = cn
        self.answers = answers
        self.readings = self.remaining = readings
        self.count = count  # frames the message had
        self.ok = True

    def __call__(self, ok: bool) -> None:
        self.ok = self.ok and ok
        self.remaining -= 1
        if self.remaining == 0:
            self.conn.published(self)


_READ_BUFFER = bytearray(65536)  # shared: filled and consumed within one callback of the loop
_READ_VIEW = memoryview(_READ_BUFFER)


class Connection(asyncio.BufferedProtocol):
    """One station connection.

    A buffered protocol: asyncio reads into one buffer shared by all connections (the plain
    protocol's reads allocate 256 KiB per ``recv``), and the framer copies out what it keeps."""

    __slots__ = (
        "backlog",
        "closed",
        "framer",
        "gw",
        "inflight",
        "last",
        "paused",
        "peer",
        "refusals",
        "splits",
        "transport",
    )

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.framer: Framer | None = None
        self.last = time.monotonic()
        self.inflight = 0
        self.refusals = 0
        self.paused = False
        self.closed = False
        self.splits: Splits[Packet] | None = None
        self.backlog: list[Frame | Refused] = []  # decoded, waiting for frames in flight to finish

    # --- connection life ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        gw, m = self.gw, self.gw.metrics
        transport = cast(asyncio.Transport, transport)  # a stream transport, whichever event loop
        if not gw.accepting or len(gw.conns) >= gw.gs.max_connections:
            m.accepted.labels("refused_limit").inc()
            self.closed = True
            transport.abort()
            return
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        transport.set_write_buffer_limits(high=64 * 1024)
        gs = gw.gs
        self.framer = Framer(gs.max_frame_bytes, gs.crc, gs.dlq_copy_bytes, gs.max_junk_bytes)
        gw.conns.add(self)
        m.accepted.labels("accepted").inc()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is None:
            return  # refused at the door
        gw = self.gw
        gw.conns.discard(self)
        if not self.closed:
            self.closed = True
            gw.metrics.closed.labels("peer" if exc is None else "error").inc()
        backlog, self.backlog = self.backlog, []
        unread = 0
        for item in backlog:  # decoded, never handled: the station got no answer and sends again
            if isinstance(item, Refused):
                self.refuse_bytes(item.raw, item.code, item.reason, mn_of(item.raw))
            else:
                unread += 1
        if unread:
            gw.metrics.frame("other", "unanswered_at_close", unread)
        if self.framer is not None:
            for refused in self.framer.close():
                self.refuse_bytes(refused.raw, refused.code, refused.reason, mn_of(refused.raw))
        if self.splits is not None:
            for packets in self.splits.drain():
                self.refuse_split(packets, "the connection ended before the last packet")

    def close(self, reason: str) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.gw.metrics.closed.labels(reason).inc()
            log.info("closing %s: %s", self.peer, reason)
            self.transport.close()

    def pause_writing(self) -> None:
        # our answers pile up unread: a peer that does not read holds memory for nothing
        if self.transport is not None and not self.closed:
            self.closed = True
            self.gw.metrics.closed.labels("slow_reader").inc()
            self.transport.abort()

    def stop_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()
            self.paused = True

    def maybe_resume(self) -> None:
        gw = self.gw
        if not self.paused or not gw.accepting or self.closed or self.transport is None:
            return
        if self.backlog and self.inflight < gw.gs.max_inflight and not gw.publisher.congested:
            backlog, self.backlog = self.backlog, []
            self.process(backlog)
        if not self.backlog and self.inflight <= gw.gs.max_inflight // 2 and not gw.publisher.congested:
            self.paused = False
            self.transport.resume_reading()

    # --- bytes in --------------------------------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_VIEW

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(_READ_VIEW[:nbytes]))

    def data_received(self, data: bytes) -> None:
        self.last = time.monotonic()
        gw = self.gw
        gw.metrics.received_bytes += len(data)
        framer = self.framer
        if framer is None or self.closed:
            return
        items = framer.feed(data)
        if self.backlog:
            self.backlog += items
        else:
            self.process(items)

    def process(self, items: list[Frame | Refused]) -> None:
        """Handle decoded items in order; past ``max_inflight`` frames awaiting Kafka (or with
        Kafka congested) the rest waits, and so does the socket."""
        gw = self.gw
        limit = gw.gs.max_inflight
        for i, item in enumerate(items):
            if type(item) is Frame:
                if self.inflight >= limit or gw.publisher.congested:
                    self.backlog = items[i:]
                    self.stop_reading()
                    return
                self.on_frame(item)
            else:
                assert isinstance(item, Refused)
                self.refuse_bytes(item.raw, item.code, item.reason, mn_of(item.raw))
                if item.fatal:
                    self.close("junk")
            if self.closed:
                return
        self.backlog = []
        if self.inflight >= limit or gw.publisher.congested:
            self.stop_reading()

    def on_frame(self, frame: Frame) -> None:
        gw = self.gw
        gw.metrics.crc_seen(frame.crc)
        seg = parse_segment(frame.segment)
        if isinstance(seg, Rejection):
            self.refuse_frame(frame, None, seg.code, seg.reason, mn_of(frame.segment))
            return
        if seg.version not in VERSIONS:
            why = f"Flag {seg.flag} names version {seg.version}; the gateway speaks 1 (2017) and 2 (2025)"
            self.refuse_frame(frame, seg, "version", why, seg.mn)
            return
        identity = gw.by_mn.get(seg.mn)
        if identity is None:
            self.refuse_frame(
                frame, seg, "unknown_mn", f"MN {seg.mn} is no station of the grid directory", seg.mn
            )
            return
        station, key, password = identity
        if password is not None and (
            seg.pw is None or not hmac.compare_digest(seg.pw.encode("latin-1"), password)
        ):
            self.refuse_frame(
                frame, seg, "bad_password", f"wrong or missing PW for station {station}", seg.mn
            )
            return
        cn = seg.cn
        if cn in DATA_CNS:
            if seg.st != "22":
                why = f"ST {seg.st}: this gateway takes data of ambient air quality (ST 22)"
                self.refuse_frame(frame, seg, "unsupported_st", why, seg.mn)
                return
            self.on_data(frame, seg, station, key)
        elif cn in ANSWER_CNS:  # a station's answer to a request of ours (CN 1012 below)
            self.accepted(cn, "answer")
        elif cn in NOTIFY_CNS:
            self.accepted(cn, "answered")
            if seg.wants_answer and seg.qn:
                self.write(encode_frame(answer(seg, "9013"), frame.crc))
            if cn == "1013":  # a clock calibration request: the platform sets the station's clock
                self.set_clock(frame, seg, station)
        elif cn in OTHER_UPLOADS:
            self.accepted(cn, "not_published")
            if seg.wants_answer and seg.qn:
                self.write(encode_frame(answer(seg, "9014"), frame.crc))
        else:
            self.refuse_frame(
                frame, seg, "unsupported_cn", f"CN {cn} is no command this gateway takes", seg.mn
            )

    def on_data(self, frame: Frame, seg: Segment, station: str, key: bytes) -> None:
        gw = self.gw
        gs = gw.gs
        if seg.backfill:
            gw.metrics.backfill.inc()
        packets: list[Packet] = [(frame, seg)]
        if seg.split and gs.split_mode == "merge" and seg.pnum is not None and seg.pnum > 1:
            if seg.pnum > gs.max_split_packets:
                why = f"PNUM {seg.pnum} exceeds the limit of {gs.max_split_packets} packets"
                self.refuse_frame(frame, seg, "too_large", why, seg.mn)
                return
            if self.splits is None:
                self.splits = Splits(timeout_s=gs.split_timeout_seconds)
            assert seg.pno is not None
            complete, evicted = self.splits.add(
                (seg.mn, seg.cn, seg.pnum), seg.pno, (frame, seg), time.monotonic()
            )
            for lost in evicted:
                self.refuse_split(lost, "too many split messages open at once")
            if complete is None:
                self.accepted(seg.cn, "held")
                return
            packets = complete
        profile = gw.profiles.of(station)
        answers = [encode_frame(answer(s, "9014"), f.crc) for f, s in _askers(packets)]
        if seg.cn not in profile.reading_cns:  # daily data, or a data command not chosen for readings
            self.accepted(seg.cn, "not_published", len(packets))
            for a in answers:
                self.write(a)
            return
        per_packet: list[list[Record]] = []
        for _, s in packets:
            cp = parse_cp(s.cp)
            if isinstance(cp, Rejection):
                self.refuse_packets(packets, cp.code, cp.reason, answers)
                return
            per_packet.append(cp[1])
        records = per_packet[0] if len(per_packet) == 1 else merge_records(per_packet)
        decoded = (
            records
            if isinstance(records, Rejection)
            else to_readings(station, seg.cn, records, profile, gw.clock(), gw.limits)
        )
        if isinstance(decoded, Rejection):
            self.refuse_packets(packets, decoded.code, decoded.reason, answers)
            return
        self.publish(decoded, seg.cn, key, answers, len(packets))

    def publish(self, decoded: Decoded, cn: str, key: bytes, answers: list[bytes], frames: int) -> None:
        gw = self.gw
        for kind, n in decoded.dropped.items():
            gw.metrics.dropped.labels(kind).inc(n)
        waiter = _Waiter(self, cn, answers, len(decoded.readings), frames)
        self.inflight += 1
        self.refusals = 0
        publish, topic = gw.publisher.publish, gw.readings_topic
        for payload, _ in decoded.readings:
            publish(topic, key, payload, waiter)

    def published(self, waiter: _Waiter) -> None:
        """Kafka acknowledged (or gave up on) every reading of a message."""
        m = self.gw.metrics
        self.inflight -= 1
        if waiter.ok:
            m.frame(waiter.cn, "published", waiter.count)
            m.readings_published += waiter.readings
            for a in waiter.answers:
                self.write(a)
        else:
            m.frame(waiter.cn, "failed", waiter.count)  # unanswered: the station sends again
        self.maybe_resume()

    def accepted(self, cn: str, outcome: str, frames: int = 1) -> None:
        self.refusals = 0
        self.gw.metrics.frame(cn, outcome, frames)

    def write(self, data: bytes) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(data)
            self.gw.metrics.answers_sent += 1
        else:
            self.gw.metrics.answers_lost += 1

    def set_clock(self, frame: Frame, seg: Segment, station: str) -> None:
        zone = self.gw.profiles.of(station).zone
        now = self.gw.clock().astimezone(zone)
        cp = parse_cp(seg.cp)
        pol = cp[0].get("PolId") if not isinstance(cp, Rejection) else None
        params = (f"PolId={pol};" if pol else "") + f"SystemTime={now:%Y%m%d%H%M%S}"
        qn = f"{now:%Y%m%d%H%M%S}{now.microsecond // 1000:03d}"
        self.write(encode_frame(request(qn, seg, "1012", params), frame.crc))

    # --- refusals --------------------------------------------------------------------------------

    def refuse_frame(self, frame: Frame, seg: Segment | None, code: str, reason: str, mn: str | None) -> None:
        wire = encode_frame(frame.segment, frame.crc)  # the frame as it came (its CRC matched)
        self.gw.metrics.frame(seg.cn if seg else "other", "refused")
        self.refuse_bytes(wire, code, reason, mn)

    def refuse_packets(self, packets: list[Packet], code: str, reason: str, answers: list[bytes]) -> None:
        """Refuse an authenticated message's content; once its dead letter is on Kafka, answer it."""
        m = self.gw.metrics
        m.frame(packets[0][1].cn, "refused", len(packets))
        raw = b"".join(encode_frame(f.segment, f.crc) for f, _ in packets)
        then = answers if code in ANSWERED_REFUSALS else []
        self.refuse_bytes(raw, code, reason, packets[0][1].mn, key=self._key(packets[0][1].mn), answers=then)

    def refuse_split(self, packets: list[Packet], why: str) -> None:
        first = packets[0][1]
        have = ", ".join(str(s.pno) for _, s in packets)
        reason = f"split message of {first.pnum} packets incomplete ({why}); held packets: {have}"
        self.refuse_packets(packets, "split_incomplete", reason, [])

    def refuse_bytes(
        self,
        raw: bytes,
        code: str,
        reason: str,
        mn: str | None,
        *,
        key: bytes | None = None,
        answers: list[bytes] | None = None,
    ) -> None:
        gw = self.gw
        gw.metrics.refused.labels(code).inc()
        payload, b64 = text_of(mask_password(raw[: gw.gs.dlq_copy_bytes]))
        letter = DeadLetter(
            reason=reason,
            reason_code=code,
            origin=None,
            key=key.decode() if key else None,
            payload=payload,
            payload_b64=b64,
            at=gw.clock(),
            peer=self.peer,
            mn=mn,
        )
        log.info("refused %s from %s (MN %s): %s", code, self.peer, mn or "?", reason)
        if answers:
            self.inflight += 1

            def then(ok: bool) -> None:
                self.inflight -= 1
                if ok:
                    for a in answers:
                        self.write(a)
                self.maybe_resume()

            gw.publisher.publish(gw.dlq_topic, key, encode(letter), then)
        else:
            gw.publisher.publish(gw.dlq_topic, key, encode(letter), _ignore)
        self.refusals += 1
        if self.refusals > gw.gs.max_refusals:
            self.close("refusals")

    def _key(self, mn: str) -> bytes | None:
        identity = self.gw.by_mn.get(mn)
        return identity[1] if identity else None


def _askers(packets: list[Packet]) -> list[tuple[Frame, Segment]]:
    """Packets that asked for an answer, one per QN (the packets of one interaction share it)."""
    seen: set[str] = set()
    out = []
    for f, s in packets:
        if s.wants_answer and s.qn and s.qn not in seen:
            seen.add(s.qn)
            out.append((f, s))
    return out


def _ignore(ok: bool) -> None:
    """A dead letter nobody waits for (Kafka's failure is counted by the publisher)."""
