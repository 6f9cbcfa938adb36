"""Simulated stations that speak HJ 212-2017 to ``airgrid gateway`` over TCP, as data acquisition
units do: one connection per station, minute data (CN 2051) asking for an answer, a frame sent
again when its answer does not come, a new connection when the old one breaks.

``data_frame`` turns a :class:`~airgrid.models.readings.Reading` into the frame a station would
send for it (the tests and the benchmark use it too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from airgrid.config.settings import Settings
from airgrid.domain.directory import Directory
from airgrid.gateway.decode import POLLUTANT_CODES, WIND_DIRECTION, WIND_SPEED
from airgrid.gateway.frame import CrcVariant, Frame, Framer, encode_frame
from airgrid.gateway.segment import Segment, parse_segment
from airgrid.models.readings import Reading
from airgrid.sim.runner import SimConfig, SimStats
from airgrid.sim.stations import SimStation, demo_fleet

log = logging.getLogger(__name__)
CODES = {p: code for code, p in POLLUTANT_CODES.items()}


def _number(x: float) -> str:
    return f"{x:.3f}".rstrip("0").rstrip(".") if x != int(x) else str(int(x))


def data_segment(
    mn: str,
    pw: str | None,
    reading: Reading,
    qn: str,
    *,
    cn: str = "2051",
    zone: ZoneInfo | None = None,
    label: str = "start",
    flag: int = 5,
    extra: str = "",
) -> bytes:
    """The data segment a station sends for ``reading`` (DataTime labels the interval's start,
    or its end with ``label="end"``; real-time data, CN 2011, carries the instant)."""
    zone = zone or ZoneInfo("Asia/Shanghai")
    start = reading.observed_at
    if label == "start" and cn != "2011":
        start = reading.observed_at - timedelta(seconds=reading.interval_s)
    field = "Rtd" if cn == "2011" else "Avg"
    groups = [f"DataTime={start.astimezone(zone):%Y%m%d%H%M%S}"]
    for pollutant, value in reading.values.items():
        code = CODES[pollutant]
        groups.append(f"{code}-{field}={_number(value)},{code}-Flag={reading.flags.get(pollutant, 'N')}")
    if reading.wind is not None:
        groups.append(f"{WIND_SPEED}-{field}={_number(reading.wind.speed)},{WIND_SPEED}-Flag=N")
        groups.append(f"{WIND_DIRECTION}-{field}={_number(reading.wind.direction)},{WIND_DIRECTION}-Flag=N")
    password = f"PW={pw};" if pw is not None else ""
    return f"QN={qn};ST=22;CN={cn};{password}MN={mn};Flag={flag};{extra}CP=&&{';'.join(groups)}&&".encode()


def data_frame(
    mn: str, pw: str | None, reading: Reading, qn: str, crc: CrcVariant = "annex-a", **kw: object
) -> bytes:
    return encode_frame(data_segment(mn, pw, reading, qn, **kw), crc)  # type: ignore[arg-type]


def qn_of(at: datetime, seq: int) -> str:
    """A request number, yyyyMMddHHmmssSSS: unique per station and frame."""
    return f"{at.astimezone(UTC):%Y%m%d%H%M%S}{seq % 1000:03d}"


async def wait_for_gateway(host: str, port: int, timeout_s: float) -> None:
    """Return once the gateway accepts a connection; ConnectionError after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
        except (OSError, TimeoutError) as exc:
            if loop.time() >= deadline:
                errno = exc.errno if isinstance(exc, OSError) else None
                reason = os.strerror(errno) if errno else "timed out"
                raise ConnectionError(
                    f"no gateway at {host}:{port} after {timeout_s:g} s ({reason})"
                ) from None
            await asyncio.sleep(0.5)
            continue
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        return


class StationLink:
    """One station's TCP connection to the gateway: sends a frame, waits for its answer, sends
    it again (up to ``retries`` times, reconnecting if needed) when no answer comes in time."""

    def __init__(self, host: str, port: int, timeout_s: float = 5.0, retries: int = 1000) -> None:
        self.host, self.port = host, port
        self.timeout_s = timeout_s
        self.retries = retries
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.framer = Framer()
        self.resent = 0

    async def _connect(self) -> None:
        while True:
            try:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
                self.framer = Framer()
                return
            except OSError:
                await asyncio.sleep(0.5)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
            self.writer = None

    async def send_only(self, data: bytes) -> None:
        """Bytes that expect no answer (a malformed frame, a heartbeat without A)."""
        if self.writer is None:
            await self._connect()
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()

    async def deliver(self, frame: bytes, qn: str) -> Segment:
        """Send ``frame`` until the gateway's 9014 answer to ``qn`` arrives; return the answer."""
        for attempt in range(self.retries + 1):
            if attempt:
                self.resent += 1
            try:
                if self.writer is None:
                    await self._connect()
                assert self.writer is not None and self.reader is not None
                self.writer.write(frame)
                await self.writer.drain()
                got = await asyncio.wait_for(self._answer(qn), self.timeout_s)
                if got is not None:
                    return got
            except (TimeoutError, OSError, asyncio.IncompleteReadError):
                pass
            await self.close()  # a new connection, as data units do after a silent gateway
        raise TimeoutError(f"no answer to QN {qn} after {self.retries + 1} tries")

    async def _answer(self, qn: str) -> Segment | None:
        assert self.reader is not None
        while True:
            data = await self.reader.read(4096)
            if not data:
                return None
            for item in self.framer.feed(data):
                if isinstance(item, Frame):
                    seg = parse_segment(item.segment)
                    if isinstance(seg, Segment) and seg.cn == "9014" and seg.qn == qn:
                        return seg


@dataclass
class Hj212Target:
    host: str
    port: int


async def run_hj212_stations(
    settings: Settings,
    directory: Directory,
    cfg: SimConfig,
    target: Hj212Target,
    stats: SimStats | None = None,
) -> SimStats:
    """The demo's fleet, each station on its own connection to the gateway, one minute-data frame
    per tick (event time compressed, never ahead of the wall clock)."""
    stats = stats or SimStats()
    rng = random.Random(cfg.seed)
    ids = [s for s in sorted(directory.stations) if directory.stations[s].mn][: cfg.stations]
    now = datetime.now(UTC)
    start = (now - timedelta(hours=cfg.hours_back)).replace(minute=0, second=0, microsecond=0)
    fleet: list[SimStation] = demo_fleet(ids, start, cfg.seed)
    links = {sid: StationLink(target.host, target.port) for sid in ids}
    zone = settings.zone
    t = start
    tick = 0
    try:
        while cfg.ticks is None or tick < cfg.ticks:
            t = min(t + timedelta(minutes=cfg.step_minutes), datetime.now(UTC))
            began = time.monotonic()
            jobs = []
            for i, st in enumerate(fleet):
                station = directory.stations[st.station_id]
                assert station.mn is not None
                pw = station.pw.get_secret_value() if station.pw else None
                reading = st.reading(t, cfg.step_minutes * 60, rng)
                qn = qn_of(t, tick * 1000 + i)
                jobs.append(
                    links[st.station_id].deliver(data_frame(station.mn, pw, reading, qn, zone=zone), qn)
                )
            await asyncio.gather(*jobs)
            stats.readings += len(jobs)
            tick += 1
            if cfg.malformed_every and tick % cfg.malformed_every == 0:
                await links[ids[0]].send_only(_malformed(tick // cfg.malformed_every, directory, ids[0]))
                stats.malformed += 1
            await asyncio.sleep(max(0.0, cfg.tick_seconds - (time.monotonic() - began)))
    finally:
        await asyncio.gather(*(link.close() for link in links.values()))
    return stats


def _malformed(n: int, directory: Directory, station_id: str) -> bytes:
    """The odd bad frame field devices send: a broken CRC, line noise, an unknown station."""
    mn = directory.stations[station_id].mn or "X"
    seg = f"QN=20260101000000000;ST=22;CN=2051;PW=000000;MN={mn};Flag=5;CP=&&DataTime=20260101000000&&"
    kind = n % 3
    if kind == 0:
        return encode_frame(seg.encode())[:-6] + b"0000\r\n"  # CRC does not match
    if kind == 1:
        return b"\x00\xff+++ATH0\r\n"  # modem noise on the line
    return encode_frame(seg.replace(mn, "99999999UNKNOWN").encode())
