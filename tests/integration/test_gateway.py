"""``airgrid gateway`` on the real broker, beside the real worker: HJ 212 frames over TCP become
readings, each answered only once Kafka holds it, and the worker turns them into alarms; refused
frames reach readings.dlq; a gateway killed mid-stream loses nothing while stations re-send what
went unanswered, and the worker recognises the repeats."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from airgrid.config.settings import DATA_DIR
from airgrid.domain.directory import Directory
from airgrid.gateway.frame import encode_frame
from airgrid.kafka.local import LocalKafka, free_port
from airgrid.models.readings import Reading
from airgrid.sim.hj212 import StationLink, data_frame, data_segment, qn_of
from tests.helpers import Collector, Worker, airgrid_cli, read_topics, worker_env
from tests.integration.gateway_support import GatewayProcess, Station, gateway_env

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.timeout(300)]
SHANGHAI = ZoneInfo("Asia/Shanghai")
DIRECTORY = Directory.load(DATA_DIR / "grids.json")


def identity(station_id: str) -> tuple[str, str]:
    st = DIRECTORY.stations[station_id]
    assert st.mn is not None and st.pw is not None
    return st.mn, st.pw.get_secret_value()


def on(readings: list[dict[str, object]], station: str, at: datetime) -> int:
    return sum(
        1
        for r in readings
        if r["station_id"] == station and datetime.fromisoformat(str(r["observed_at"])) == at
    )


async def poll(check: object, timeout: float, what: str, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def test_answers_follow_readings_on_kafka_and_the_worker_alarms(
    kafka_bootstrap: str, uid: str, tmp_path: Path
) -> None:
    env = worker_env(kafka_bootstrap, uid, tmp_path / "state")
    p = env["AIRGRID_TOPIC_PREFIX"]
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    gateway = GatewayProcess(gateway_env(env), tmp_path / "gateway.log")
    gateway.start()
    mn, pw = identity("ST001")
    hour = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    station = await Station.connect(gateway.port)
    try:
        async with Collector(kafka_bootstrap, [p + "alarms", p + "readings.dlq"]) as seen:
            frame = b""
            for i in range(1, 7):  # an hour of 10-minute data, PM2.5 well over the 75 ug/m3 limit
                at = hour + timedelta(minutes=10 * i)
                reading = Reading(
                    station_id="ST001", observed_at=at, interval_s=600, values={"pm25": 120.0, "pm10": 180.0}
                )
                qn = qn_of(at, i)
                frame = data_frame(mn, pw, reading, qn, zone=SHANGHAI)
                await station.send(frame)
                answer = await station.answer(qn)
                assert (answer.cn, answer.st, answer.mn) == ("9014", "91", mn)
                # the answer came: the reading is on Kafka already
                readings = (await read_topics(kafka_bootstrap, [p + "readings"]))[p + "readings"]
                assert on(readings, "ST001", at) == 1, f"reading {at} not on Kafka when answered"
            # the station missed the last answer and sends the frame again: answered again,
            # a second copy on Kafka, and the worker knows it for a duplicate
            await station.send(frame)
            assert (await station.answer(qn, nth=2)).cn == "9014"
            alarm = await seen.wait_for(
                p + "alarms",
                lambda a: a["station_id"] == "ST001" and a["kind"] == "opened" and a["pollutant"] == "pm25",
                90,
                "a PM2.5 alarm of ST001",
            )
            assert alarm["value"] == 120.0
            await poll(
                lambda: worker.metric("airgrid_readings_total", outcome="duplicate") >= 1, 60, "a duplicate"
            )
            # refused: a broken CRC and an unknown station, both to readings.dlq with the peer
            bad = data_segment(mn, pw, reading, "1", zone=SHANGHAI)
            await station.send(encode_frame(bad)[:-6] + b"0000\r\n")
            await station.send(data_frame("99999999UNKNOWN", pw, reading, "2", zone=SHANGHAI))
            letters = [
                await seen.wait_for(p + "readings.dlq", lambda d, c=code: d["reason_code"] == c, 30, code)
                for code in ("crc", "unknown_mn")
            ]
            for letter in letters:
                assert letter["origin"] is None and letter["peer"].startswith("127.0.0.1:")
                assert pw not in letter["payload"] and "PW=***" in letter["payload"]
            assert {letter["mn"] for letter in letters} == {mn, "99999999UNKNOWN"}
        assert gateway.metric("airgrid_gateway_frames_total", cn="2051", outcome="published") == 7
        assert gateway.metric("airgrid_gateway_refused_total") == 2
        # the simulator's stations, as a user runs them against this gateway: each frame answered
        args = ["simulate", "--hj212", f"127.0.0.1:{gateway.port}", "--stations", "3", "--ticks", "2"]
        run = await asyncio.to_thread(airgrid_cli, gateway_env(env), *args, "--tick", "0.1")
        assert run.returncode == 0, run.stderr
        assert run.stdout.startswith(f"sent 6 reading(s) to the gateway at 127.0.0.1:{gateway.port}")
        assert gateway.metric("airgrid_gateway_frames_total", cn="2051", outcome="published") == 13
    finally:
        await station.close()
        assert gateway.stop() == 0, gateway.tail()
        worker.stop()


async def test_a_gateway_killed_mid_stream_loses_no_reading(uid: str, tmp_path: Path) -> None:
    """Two SIGKILLs: one plain, one while Kafka is frozen with readings in flight (they land on
    Kafka after the gateway died, unanswered, and come again: duplicates the worker recognises).
    Its own broker, to freeze it."""
    kafka = LocalKafka(port=free_port(), controller_port=free_port(), data_dir=tmp_path / "kafka")
    kafka.start(timeout=180)
    bootstrap = kafka.bootstrap
    env = worker_env(bootstrap, uid, tmp_path / "state")
    p = env["AIRGRID_TOPIC_PREFIX"]
    worker = Worker(env, tmp_path / "worker.log")
    gateway = GatewayProcess(gateway_env(env), tmp_path / "gateway.log")
    ids = sorted(DIRECTORY.stations)[:12]
    frames_each = 30
    start = (datetime.now(UTC) - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    sent: list[tuple[str, datetime]] = []
    answered = 0
    links = [StationLink("127.0.0.1", gateway.port, timeout_s=2.0) for _ in ids]

    async def station(k: int, sid: str) -> None:
        nonlocal answered
        mn, pw = identity(sid)
        for i in range(1, frames_each + 1):
            at = start + timedelta(minutes=10 * i)
            reading = Reading(station_id=sid, observed_at=at, interval_s=600, values={"pm25": 30.0 + i})
            qn = qn_of(at, k)
            await links[k].deliver(data_frame(mn, pw, reading, qn, zone=SHANGHAI), qn)
            sent.append((sid, at))
            answered += 1
            await asyncio.sleep(0.03)  # a stream that lasts, so that the kills land inside it

    async def killer() -> None:
        for third in (1, 2):
            target = len(ids) * frames_each * third // 3
            await poll(lambda t=target: answered >= t, 120, f"{target} answered", every=0.005)
            if third == 2:
                await asyncio.to_thread(kafka.pause)  # readings go out, no acknowledgement comes back
                await asyncio.sleep(0.5)
            gateway.kill()  # SIGKILL: no flush, no goodbye; unanswered frames are the stations' to send again
            if third == 2:
                kafka.resume()  # appends what the dead gateway had sent
            await asyncio.sleep(1.0)
            await asyncio.to_thread(gateway.start)

    try:
        worker.start()
        gateway.start()
        await asyncio.gather(killer(), *(station(k, sid) for k, sid in enumerate(ids)))
        resent = sum(link.resent for link in links)
        assert resent > 0  # frames went unanswered and were sent again
        readings = (await read_topics(bootstrap, [p + "readings"]))[p + "readings"]
        copies = Counter((r["station_id"], datetime.fromisoformat(str(r["observed_at"]))) for r in readings)
        missing = [key for key in sent if copies[key] == 0]
        assert missing == [], f"{len(missing)} readings lost: {missing[:5]}"
        assert set(copies) == set(sent)
        repeats = sum(n - 1 for n in copies.values())
        assert repeats > 0  # the readings Kafka took while frozen were sent again
        await poll(
            lambda: worker.metric("airgrid_readings_total") >= len(readings),
            120,
            "the worker to read every copy",
        )
        assert worker.metric("airgrid_readings_total", outcome="duplicate") == repeats
        print(f"{len(sent)} readings, {resent} frames sent again, {repeats} duplicates, all recognised")
    finally:
        for link in links:
            await link.close()
        gateway.stop()
        worker.stop()
        kafka.close()
