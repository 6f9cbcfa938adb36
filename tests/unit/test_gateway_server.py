"""The gateway's TCP server (airgrid.gateway.server) over real sockets, with an in-memory sink in
place of Kafka so that each test decides when (and whether) Kafka acknowledges: answers only after
the acknowledgement, refusals to the DLQ with peer and MN and no password, the standard's other
answers, split packets, and the limits that hold a slow or hostile client."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from prometheus_client import CollectorRegistry

from airgrid.config.settings import DATA_DIR
from airgrid.domain.directory import Directory
from airgrid.domain.intake import Limits, parse_reading
from airgrid.gateway.frame import Frame, Framer, encode_frame
from airgrid.gateway.metrics import GatewayMetrics
from airgrid.gateway.segment import Segment, parse_segment
from airgrid.gateway.server import Gateway
from airgrid.gateway.settings import GatewaySettings, build_profiles
from airgrid.models.dlq import DeadLetter
from airgrid.models.readings import Reading
from airgrid.sim.hj212 import data_frame, data_segment

pytestmark = pytest.mark.timeout(60)
SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
LIMITS = Limits(max_bytes=65536, max_future=timedelta(seconds=300), max_age=timedelta(days=400))
DIRECTORY = Directory.load(DATA_DIR / "grids.json")
ST1 = DIRECTORY.stations["ST001"]
MN, PW = ST1.mn or "", ST1.pw.get_secret_value() if ST1.pw else ""


def reading(minute: int = 0, **values: float) -> Reading:
    return Reading(
        station_id="ST001",
        observed_at=datetime(2026, 11, 28, 13, 10 + minute, tzinfo=SHANGHAI),
        interval_s=600,
        values=values or {"pm25": 48.1, "pm10": 80.0},
    )


@dataclass
class MemorySink:
    """Kafka stand-in: holds each message and its callback until the test acknowledges it."""

    held: list[tuple[str, bytes | None, bytes, Callable[[bool], None]]] = field(default_factory=list)
    congested: bool = False

    def publish(self, topic: str, key: bytes | None, value: bytes, done: Callable[[bool], None]) -> None:
        self.held.append((topic, key, value, done))

    def ack(self, ok: bool = True, topic: str | None = None) -> list[tuple[str, bytes | None, bytes]]:
        now = [x for x in self.held if topic is None or x[0] == topic]
        self.held = [x for x in self.held if x not in now]  # callbacks may publish more
        for item in now:
            item[3](ok)
        return [x[:3] for x in now]

    def of(self, topic: str) -> list[bytes]:
        return [v for t, _, v, _ in self.held if t == topic]


class Client:
    """A station's socket: send bytes, read the frames the gateway answers with."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = Framer()
        self.got: list[Segment] = []

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answers(self, n: int, timeout: float = 3.0) -> list[Segment]:
        deadline = time.monotonic() + timeout
        while len(self.got) < n and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                data = await asyncio.wait_for(self.reader.read(4096), max(0.01, deadline - time.monotonic()))
                if not data:
                    break
                for item in self.framer.feed(data):
                    if isinstance(item, Frame):
                        seg = parse_segment(item.segment)
                        assert isinstance(seg, Segment)
                        self.got.append(seg)
        return self.got

    async def closed_by_peer(self, timeout: float = 3.0) -> bool:
        with contextlib.suppress(TimeoutError, ConnectionError):
            while True:
                if not await asyncio.wait_for(self.reader.read(4096), timeout):
                    return True
        return False


@dataclass
class Rig:
    gw: Gateway
    sink: MemorySink
    metrics: GatewayMetrics

    async def connect(self) -> Client:
        return Client(*await asyncio.open_connection("127.0.0.1", self.gw.port))

    def letters(self) -> list[DeadLetter]:
        return [DeadLetter.model_validate_json(v) for v in self.sink.of("dlq")]

    def metric(self, name: str, **labels: str) -> float:
        self.metrics.flush()
        value = self.metrics.registry.get_sample_value(name, labels)
        return value or 0.0


@contextlib.asynccontextmanager
async def rig(**settings: Any) -> AsyncIterator[Rig]:
    gs = GatewaySettings(**{"listen": "127.0.0.1:0", **settings})
    sink, metrics = MemorySink(), GatewayMetrics(CollectorRegistry())
    gw = Gateway(
        gs=gs,
        directory=DIRECTORY,
        profiles=build_profiles(gs, "Asia/Shanghai", set(DIRECTORY.stations)),
        limits=LIMITS,
        publisher=sink,
        metrics=metrics,
        readings_topic="readings",
        dlq_topic="dlq",
        clock=lambda: NOW,
    )
    await gw.start()
    try:
        yield Rig(gw, sink, metrics)
    finally:
        await gw.close(0)


async def settle() -> None:
    await asyncio.sleep(0.05)


async def test_the_answer_comes_only_after_kafka_acknowledged_the_reading() -> None:
    async with rig() as r:
        c = await r.connect()
        qn = "20261128131000001"
        await c.send(data_frame(MN, PW, reading(), qn))
        await settle()
        assert await c.answers(1, timeout=0.3) == []  # Kafka has not acknowledged: no answer
        ((topic, key, value),) = r.sink.ack()
        assert (topic, key) == ("readings", b"ST001")
        parsed = parse_reading(value, NOW, LIMITS, {"ST001"}.__contains__)  # the worker's intake
        assert parsed == reading()
        (ans,) = await c.answers(1)
        assert (ans.cn, ans.qn, ans.st, ans.mn, ans.flag) == ("9014", qn, "91", MN, 4)
        assert r.metric("airgrid_gateway_frames_total", cn="2051", outcome="published") == 1
        assert r.metric("airgrid_gateway_readings_total") == 1
        assert r.metric("airgrid_gateway_crc_total", variant="annex-a") == 1


async def test_no_answer_when_kafka_gives_up() -> None:
    async with rig() as r:
        c = await r.connect()
        await c.send(data_frame(MN, PW, reading(), "20261128131000002"))
        await settle()
        r.sink.ack(ok=False)
        assert await c.answers(1, timeout=0.3) == []  # the station will send it again
        assert r.metric("airgrid_gateway_frames_total", cn="2051", outcome="failed") == 1


async def test_a_modbus_frame_is_answered_with_modbus() -> None:
    async with rig() as r:
        c = await r.connect()
        await c.send(data_frame(MN, PW, reading(), "20261128131000003", crc="modbus"))
        await settle()
        r.sink.ack()
        data = await asyncio.wait_for(c.reader.readuntil(b"\r\n"), 3)
        assert Framer(crc="annex-a").feed(data)[0].code == "crc"  # type: ignore[union-attr]
        assert isinstance(Framer(crc="any").feed(data)[0], Frame)
        assert r.metric("airgrid_gateway_crc_total", variant="modbus") == 1


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (data_frame("99999999UNKNOWN", PW, reading(), "1"), "unknown_mn"),
        (data_frame(MN, "wrong1", reading(), "1"), "bad_password"),
        (data_frame(MN, None, reading(), "1"), "bad_password"),
        (data_frame(MN, PW, reading(), "1", flag=1), "version"),  # HJ/T 212-2005
        (encode_frame(data_segment(MN, PW, reading(), "1").replace(b"ST=22", b"ST=31")), "unsupported_st"),
        (
            encode_frame(data_segment(MN, PW, reading(), "1").replace(b"CN=2051", b"CN=4321")),
            "unsupported_cn",
        ),
        (encode_frame(b"QN=1;ST=22;CN=2051;PW=" + PW.encode() + b";Flag=5;CP=&&&&"), "header"),
        (data_frame(MN, PW, reading(), "1")[:-6] + b"0000\r\n", "crc"),
        (
            b"##9000"
            + b"z" * 50
            + encode_frame(f"QN=1;ST=22;CN=9015;PW={PW};MN={MN};Flag=4;CP=&&&&".encode()),
            "too_large",
        ),
    ],
)
async def test_refusals_go_to_the_dlq_with_peer_and_mn_never_the_password(frame: bytes, code: str) -> None:
    async with rig() as r:
        c = await r.connect()
        await c.send(frame)
        await settle()
        (letter,) = r.letters()
        assert letter.reason_code == code and letter.origin is None
        assert letter.peer is not None and letter.peer.startswith("127.0.0.1:")
        assert letter.mn == (
            None if code in ("header", "too_large") else "99999999UNKNOWN" if code == "unknown_mn" else MN
        )
        text = letter.model_dump_json()
        assert PW not in text and "wrong1" not in text
        if b"PW=" in frame and code != "too_large":
            assert "PW=***" in letter.payload
        r.sink.ack()
        assert await c.answers(1, timeout=0.3) == []  # never answered: an impostor learns nothing
        assert r.metric("airgrid_gateway_refused_total", reason=code) == 1
        assert PW.encode() not in r.metrics.render() and MN.encode() not in r.metrics.render()


async def test_bad_content_is_answered_once_its_dead_letter_is_on_kafka() -> None:
    async with rig() as r:
        c = await r.connect()
        seg = data_segment(MN, PW, reading(), "20261128131000004").replace(
            b"a34004-Avg=48.1", b"a34004-Avg=x"
        )
        await c.send(encode_frame(seg))
        await settle()
        (letter,) = r.letters()
        assert letter.reason_code == "bad_value" and letter.key == "ST001" and letter.mn == MN
        assert await c.answers(1, timeout=0.2) == []
        r.sink.ack()
        (ans,) = await c.answers(1)  # the DLQ holds it: the station may stop sending it
        assert (ans.cn, ans.qn) == ("9014", "20261128131000004")


async def test_heartbeat_clock_request_and_a_stations_own_answers() -> None:
    async with rig() as r:
        c = await r.connect()
        await c.send(
            encode_frame(f"QN=20261128131000005;ST=22;CN=9015;PW={PW};MN={MN};Flag=9;CP=&&&&".encode())
        )
        (hb,) = await c.answers(1)
        assert (hb.cn, hb.qn, hb.flag) == ("9013", "20261128131000005", 8)  # 2025 family answered in kind
        clock = f"QN=20261128131000006;ST=22;CN=1013;PW={PW};MN={MN};Flag=5;CP=&&PolId=a34004&&"
        await c.send(encode_frame(clock.encode()))
        ans, setter = (await c.answers(3))[1:3]
        assert (ans.cn, ans.qn) == ("9013", "20261128131000006")
        assert setter.cn == "1012" and setter.wants_answer and "SystemTime=20261128140000" in setter.cp
        assert "PolId=a34004" in setter.cp
        await c.send(
            encode_frame(f"QN={setter.qn};ST=91;CN=9011;PW={PW};MN={MN};Flag=4;CP=&&QnRtn=1&&".encode())
        )
        await settle()
        assert len(c.got) == 3  # an answer is never answered
        assert r.metric("airgrid_gateway_frames_total", cn="9011", outcome="answer") == 1
        assert r.sink.held == []


async def test_daily_data_and_unchosen_commands_are_answered_not_published() -> None:
    async with rig() as r:
        c = await r.connect()
        await c.send(data_frame(MN, PW, reading(), "20261128131000007", cn="2031"))
        await c.send(data_frame(MN, PW, reading(), "20261128131000008", cn="2061"))
        assert [a.qn for a in await c.answers(2)] == ["20261128131000007", "20261128131000008"]
        assert r.sink.held == []
        assert r.metric("airgrid_gateway_frames_total", cn="2031", outcome="not_published") == 1


async def test_split_packets_become_one_reading_answered_after_kafka() -> None:
    async with rig() as r:
        c = await r.connect()
        first = data_segment(MN, PW, reading(pm25=48.1), "20261128131000009", flag=7, extra="PNUM=2;PNO=1;")
        second = data_segment(MN, PW, reading(pm10=80.0), "20261128131000009", flag=7, extra="PNUM=2;PNO=2;")
        await c.send(encode_frame(first))
        await settle()
        assert r.sink.held == [] and r.metric("airgrid_gateway_frames_total", cn="2051", outcome="held") == 1
        await c.send(encode_frame(second))
        await settle()
        ((_, _, value),) = r.sink.ack()
        assert orjson.loads(value)["values"] == {"pm25": 48.1, "pm10": 80.0}
        assert [a.qn for a in await c.answers(2, timeout=0.5)] == ["20261128131000009"]  # one per QN


async def test_an_incomplete_split_message_is_refused_when_the_connection_ends() -> None:
    async with rig() as r:
        c = await r.connect()
        await c.send(
            encode_frame(data_segment(MN, PW, reading(), "20261128131000010", flag=7, extra="PNUM=3;PNO=1;"))
        )
        await settle()
        c.writer.close()
        await asyncio.sleep(0.2)
        (letter,) = r.letters()
        assert letter.reason_code == "split_incomplete" and "held packets: 1" in letter.reason
        assert PW not in letter.payload


async def test_split_mode_each_takes_every_packet_alone() -> None:
    async with rig(split_mode="each") as r:
        c = await r.connect()
        await c.send(
            encode_frame(data_segment(MN, PW, reading(), "20261128131000011", flag=7, extra="PNUM=2;PNO=1;"))
        )
        await settle()
        assert len(r.sink.ack()) == 1
        assert [a.qn for a in await c.answers(1)] == ["20261128131000011"]


async def test_too_many_connections_are_refused_at_the_door() -> None:
    async with rig(max_connections=1) as r:
        first = await r.connect()
        second = await r.connect()
        assert await second.closed_by_peer()
        await first.send(data_frame(MN, PW, reading(), "20261128131000012"))
        await settle()
        assert len(r.sink.held) == 1
        assert r.metric("airgrid_gateway_connections_total", outcome="refused_limit") == 1


async def test_an_idle_connection_is_closed() -> None:
    async with rig(idle_timeout_seconds=5) as r:
        c = await r.connect()
        await settle()
        r.gw.sweep(time.monotonic() + 6)
        assert await c.closed_by_peer()
        assert r.metric("airgrid_gateway_disconnects_total", reason="idle") == 1


async def test_reads_pause_while_frames_await_kafka() -> None:
    async with rig(max_inflight=2) as r:
        c = await r.connect()
        for i in range(4):
            await c.send(data_frame(MN, PW, reading(minute=i), f"2026112813100002{i}"))
        await settle()
        assert len(r.sink.held) == 2  # the other frames wait in the socket, not in memory
        r.sink.ack()
        await settle()
        assert len(r.sink.held) == 2
        r.sink.ack()
        assert len(await c.answers(4)) == 4


async def test_garbage_is_refused_and_endless_garbage_closes_the_connection() -> None:
    async with rig(max_junk_bytes=2048) as r:
        c = await r.connect()
        await c.send(b"+++ATH0\r\n" + data_frame(MN, PW, reading(), "20261128131000030"))
        await settle()
        assert [x.reason_code for x in r.letters()] == ["framing"]
        await c.send(b"x" * 5000)
        assert await c.closed_by_peer()
        assert r.metric("airgrid_gateway_disconnects_total", reason="junk") == 1


async def test_refusals_in_a_row_close_the_connection() -> None:
    async with rig(max_refusals=3) as r:
        c = await r.connect()
        for i in range(5):
            await c.send(data_frame(MN, "wrong1", reading(), str(i)))
        assert await c.closed_by_peer()
        assert r.metric("airgrid_gateway_disconnects_total", reason="refusals") == 1


async def test_a_gateway_dead_letter_fits_the_worker_s_sql_projection(tmp_path: Path) -> None:
    """The worker's projection reads readings.dlq: a letter without origin is kept once, by its
    own place in the topic, and its copy has no password."""
    from sqlalchemy import text

    from airgrid.sinks.sql import SqlProjection, make_engine
    from airgrid.sinks.sql.writer import Letter

    async with rig() as r:
        c = await r.connect()
        await c.send(data_frame(MN, "wrong1", reading(), "1"))
        await settle()
        (letter,) = r.letters()
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    projection = SqlProjection(engine)
    projection.setup()
    assert projection.write(letters=[Letter("readings.dlq", letter, "readings.dlq:0:7")]) == 1
    assert projection.write(letters=[Letter("readings.dlq", letter, "readings.dlq:0:7")]) == 0
    with engine.connect() as db:
        (row,) = db.execute(text("select letter_id, reason_code, payload from dead_letters")).all()
    assert row[0] == "readings.dlq:0:7" and row[1] == "bad_password"
    assert "wrong1" not in row[2] and "PW=***" in row[2]
    engine.dispose()
