"""Benchmark of ``airgrid gateway`` beside a raw asyncio echo server (the limit), in one run.

    python -m bench.gateway [--connections 1000] [--seconds 15] [--idle 10000] [--bootstrap H:P]

Three figures for each server, the load coming from separate client processes over loopback TCP:

* **throughput**: frames answered per second with ``--connections`` stations, each keeping
  ``--window`` frames outstanding (closed loop). For the gateway an answer means Kafka acknowledged
  the reading (idempotent producer, acks=all), so this is frames -> readings on Kafka per second.
* **latency at 50 %**: each station sends on a fixed schedule so that all of them together offer
  half the measured throughput (open loop); frame sent -> answer received (p50/p99). For the
  gateway also frame sent -> reading read back from Kafka by a consumer (fetch wait 5 ms).
* **memory**: growth of the server process's RSS with ``--idle`` connected, silent stations,
  scaled to 10,000.

The gateway gets its own topics (a unique prefix) on a local KRaft broker started here (or
``--bootstrap``) and a grid directory with enough stations (each with an MN and a password). The
machine is shared and has few cores: the client processes, the broker and the server compete, for
both servers alike. Prints a table and writes ``bench/results/gateway.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench.common import REPO, free_port, loadavg, percentiles, rss_bytes, versions

CHINA = timezone(timedelta(hours=8))
START = datetime(2026, 1, 1, tzinfo=CHINA)  # DataTime of a station's first frame (start-labelled)
CP = (
    "a34004-Avg=35.2,a34004-Flag=N;a34002-Avg=61.0,a34002-Flag=N;a21026-Avg=8,a21026-Flag=N;"
    "a21004-Avg=30.5,a21004-Flag=N;a21005-Avg=0.7,a21005-Flag=N;a05024-Avg=60,a05024-Flag=N;"
    "a01007-Avg=2.1,a01007-Flag=N;a01008-Avg=180,a01008-Flag=N"
)


def station(i: int) -> tuple[str, str, str]:
    """(id, MN, password) of bench station ``i``."""
    return f"GW{i:06d}", f"65010022B{i:015d}", f"{(i * 7919) % 1_000_000:06d}"


def make_directory(dest: Path, n: int) -> Path:
    doc = json.loads((REPO / "airgrid" / "config" / "data" / "grids.json").read_text())
    l3 = [g["id"] for g in doc["grids"] if g["level"] == 3]
    doc["boundaries"] = None
    doc["stations"] = [
        {
            "id": sid,
            "name": f"bench {i}",
            "lon": 87.6,
            "lat": 43.8,
            "grid": l3[i % len(l3)],
            "mn": mn,
            "pw": pw,
        }
        for i in range(n)
        for sid, mn, pw in [station(i)]
    ]
    dest.write_text(json.dumps(doc))
    return dest


# --- the load, in client processes ---------------------------------------------------------------


class StationProto(asyncio.Protocol):
    """One bench station: builds frames on the fly, counts and times answers by QN."""

    def __init__(self, client: Client, index: int) -> None:
        from airgrid.gateway.frame import crc_annex_a

        self.crc = crc_annex_a
        self.client = client
        sid, mn, pw = station(index)
        self.sid = sid
        self.head = f"ST=22;CN=2051;PW={pw};MN={mn};Flag=5;CP=&&DataTime="
        self.seq = 0
        self.sent: dict[bytes, float] = {}
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.ready.set_result(None)

    def frame(self) -> tuple[bytes, bytes]:
        self.seq += 1
        qn = b"%017d" % self.seq
        when = START + timedelta(minutes=10 * self.seq)
        seg = f"QN={qn.decode()};{self.head}{when:%Y%m%d%H%M%S};{CP}&&".encode()
        return b"##%04d%b%04X\r\n" % (len(seg), seg, self.crc(seg)), qn

    def send(self) -> None:
        frame, qn = self.frame()
        self.sent[qn] = time.monotonic()
        if self.client.track:
            self.client.keys[(self.sid, self.seq)] = self.sent[qn]
        assert self.transport is not None
        self.transport.write(frame)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        now = time.monotonic()
        while True:
            end = buf.find(b"\r\n")
            if end < 0:
                break
            line, buf = buf[:end], buf[end + 2 :]
            at = line.find(b"QN=")
            qn = line[at + 3 : line.find(b";", at)]
            began = self.sent.pop(qn, None)
            if began is not None:
                self.client.answered(self, now - began)
        self.buf = buf


class Client:
    def __init__(self, mode: str, window: int) -> None:
        self.mode = mode
        self.window = window
        self.count = 0
        self.counting = False
        self.latencies: list[float] = []
        self.track = False
        self.keys: dict[tuple[str, int], float] = {}

    def answered(self, st: StationProto, latency: float) -> None:
        if self.counting:
            self.count += 1
            if self.mode == "latency":
                self.latencies.append(latency)
        if self.mode == "throughput":
            st.send()


async def _connect_all(host: str, port: int, indices: list[int], client: Client) -> list[StationProto]:
    loop = asyncio.get_running_loop()
    stations: list[StationProto] = []
    for start in range(0, len(indices), 200):  # a few hundred at a time: the accept backlog
        batch = [StationProto(client, i) for i in indices[start : start + 200]]
        await asyncio.gather(*(loop.create_connection(lambda s=s: s, host, port) for s in batch))
        stations += batch
    return stations


async def _load(host: str, port: int, indices: list[int], args: dict[str, Any], cmd: Any, out: Any) -> None:
    client = Client(args["mode"], args["window"])
    stations = await _connect_all(host, port, indices, client)
    out.put(("connected", len(stations)))
    if args["mode"] == "idle":
        await asyncio.get_running_loop().run_in_executor(None, cmd.get)  # hold until told
        return
    client.track = args.get("track", False)
    warmup, seconds = args["warmup"], args["seconds"]
    if args["mode"] == "throughput":
        for st in stations:
            for _ in range(client.window):
                st.send()
        await asyncio.sleep(warmup)
        client.counting = True
        began = time.monotonic()
        await asyncio.sleep(seconds)
        client.counting = False
        out.put(("result", {"answered": client.count, "seconds": time.monotonic() - began}))
        return
    # latency: each station on a fixed schedule, offsets spread over one period
    period = len(stations) / args["rate"]
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.5
    ends = t0 + warmup + seconds
    sent = 0

    def tick(st: StationProto, at: float) -> None:
        nonlocal sent
        if at >= ends:
            return
        if at >= t0 + warmup:
            client.counting = True
            sent += 1
        st.send()
        loop.call_at(at + period, tick, st, at + period)

    for k, st in enumerate(stations):
        first = t0 + period * k / len(stations)
        loop.call_at(first, tick, st, first)
    await asyncio.sleep(ends - loop.time() + 3.0)  # the last answers
    lat = client.latencies
    out.put(
        (
            "result",
            {"sent": sent, "latencies": lat, "keys": list(client.keys.items()) if client.track else []},
        )
    )


def client_main(host: str, port: int, indices: list[int], args: dict[str, Any], cmd: Any, out: Any) -> None:
    try:
        asyncio.run(_load(host, port, indices, args, cmd, out))
    except Exception as exc:
        out.put(("error", f"{type(exc).__name__}: {exc}"))


def run_clients(
    host: str, port: int, n: int, procs: int, args: dict[str, Any], on_idle: Any = None
) -> list[dict[str, Any]]:
    ctx = mp.get_context("spawn")
    out: Any = ctx.Queue()
    cmds = [ctx.Queue() for _ in range(procs)]
    workers = [
        ctx.Process(target=client_main, args=(host, port, list(range(k, n, procs)), args, cmds[k], out))
        for k in range(procs)
    ]
    for w in workers:
        w.start()
    results: list[dict[str, Any]] = []
    connected = 0
    deadline = time.monotonic() + args["seconds"] + args["warmup"] + 180
    while len(results) < procs and time.monotonic() < deadline:
        kind, value = out.get(timeout=deadline - time.monotonic())
        if kind == "error":
            raise RuntimeError(f"client: {value}")
        if kind == "connected":
            connected += value
            if connected == n and args["mode"] == "idle":
                results.append({"connected": connected})
                on_idle()
                for c in cmds:
                    c.put("stop")
                break
        else:
            results.append(value)
    for w in workers:
        w.join(60)
    return results


# --- the servers -------------------------------------------------------------------------------


ECHO = """
import asyncio, resource, sys
class Echo(asyncio.Protocol):
    def connection_made(self, t): self.t = t
    def data_received(self, d): self.t.write(d)
async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", int(sys.argv[1]), backlog=4096, reuse_address=True)
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


class Server:
    def __init__(self, name: str, cmd: list[str], env: dict[str, str], port: int, log: Path) -> None:
        self.name, self.port, self.log = name, port, log
        self.proc = subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {log.read_text()[-2000:]}")
            try:
                import socket

                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{name} did not listen: {log.read_text()[-2000:]}")

    def rss(self) -> int:
        return rss_bytes(self.proc.pid).get("VmRSS", 0)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def measure(server: Server, args: argparse.Namespace, consumer: Any = None) -> dict[str, Any]:
    n, procs = args.connections, args.client_procs
    common = {"window": args.window, "warmup": args.warmup, "seconds": args.seconds}
    result: dict[str, Any] = {}
    # memory first, on the fresh process: idle connections, connected and silent
    time.sleep(1)
    before = server.rss()
    grown: dict[str, int] = {}

    def sample() -> None:
        time.sleep(3)
        grown["rss"] = server.rss()

    run_clients("127.0.0.1", server.port, args.idle, max(2, procs), {**common, "mode": "idle"}, sample)
    per10k = (grown["rss"] - before) / args.idle * 10_000
    result["idle_connections"] = args.idle
    result["rss_before_mib"] = round(before / 2**20, 1)
    result["rss_idle_mib"] = round(grown["rss"] / 2**20, 1)
    result["mib_per_10k_idle"] = round(per10k / 2**20, 1)
    print(f"  {server.name}: {per10k / 2**20:.1f} MiB per 10,000 idle connections", flush=True)
    time.sleep(3)  # the idle connections close
    cpu0, t0 = server.cpu_seconds(), time.monotonic()
    tput = run_clients("127.0.0.1", server.port, n, procs, {**common, "mode": "throughput"})
    answered = sum(r["answered"] for r in tput)
    seconds = max(r["seconds"] for r in tput)
    rate = answered / seconds
    share = (server.cpu_seconds() - cpu0) / (time.monotonic() - t0)
    result["throughput_fps"] = round(rate)
    result["server_cpu_share"] = round(share, 2)
    print(
        f"  {server.name}: throughput {rate:,.0f} frames/s (its process: {share:.0%} of a core)", flush=True
    )
    time.sleep(2)
    # stations as most data units are: one frame, then wait for its answer
    saw = run_clients("127.0.0.1", server.port, n, procs, {**common, "window": 1, "mode": "throughput"})
    result["throughput_fps_stop_and_wait"] = round(
        sum(r["answered"] for r in saw) / max(r["seconds"] for r in saw)
    )
    print(f"  {server.name}: stop-and-wait {result['throughput_fps_stop_and_wait']:,} frames/s", flush=True)
    time.sleep(2)
    # below the target load too: where the latency knee lies on this machine
    for share in (0.1, 0.25):
        low = run_clients(
            "127.0.0.1", server.port, n, procs, {**common, "mode": "latency", "rate": rate * share}
        )
        lat_low = percentiles([x for r in low for x in r["latencies"]])
        result[f"latency_answer_at_{int(share * 100)}pct"] = {"offered_fps": round(rate * share), **lat_low}
        print(
            f"  {server.name}: at {rate * share:,.0f} frames/s: answer p50 {lat_low['p50_ms']} ms, "
            f"p99 {lat_low['p99_ms']} ms",
            flush=True,
        )
        time.sleep(2)
    half = rate / 2
    if consumer is not None:
        consumer.start()
    lat = run_clients(
        "127.0.0.1",
        server.port,
        n,
        procs,
        {**common, "mode": "latency", "rate": half, "track": consumer is not None},
    )
    latencies = [x for r in lat for x in r["latencies"]]
    sent = sum(r["sent"] for r in lat)
    result["latency_offered_fps"] = round(half)
    result["latency_sent"] = sent
    result["latency_answer"] = percentiles(latencies)
    if consumer is not None:
        sends = {k: t for r in lat for k, t in r["keys"]}
        result["latency_on_kafka"] = consumer.finish(sends)
    a = result["latency_answer"]
    print(
        f"  {server.name}: at {half:,.0f} frames/s: answer p50 {a['p50_ms']} ms, p99 {a['p99_ms']} ms",
        flush=True,
    )
    return result


class KafkaReader:
    """Reads the readings topic from its current end in a process of its own; records when each
    (station, observed_at) arrived."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        ctx = mp.get_context("spawn")
        self.out: Any = ctx.Queue()
        self.stop_q: Any = ctx.Queue()
        self.proc = ctx.Process(target=_read_main, args=(bootstrap, topic, self.stop_q, self.out))

    def start(self) -> None:
        self.proc.start()
        assert self.out.get(timeout=60) == "ready"

    def finish(self, sends: dict[tuple[str, int], float]) -> dict[str, Any]:
        self.stop_q.put("stop")
        arrived: dict[tuple[str, str], float] = self.out.get(timeout=120)
        self.proc.join(30)
        lat = []
        for (sid, seq), began in sends.items():
            at = (START + timedelta(minutes=10 * seq + 10)).isoformat()
            got = arrived.get((sid, at))
            if got is not None:
                lat.append(got - began)
        return {**percentiles(lat), "matched": len(lat), "sent": len(sends)}


def _read_main(bootstrap: str, topic: str, stop: Any, out: Any) -> None:
    import orjson
    from aiokafka import AIOKafkaConsumer

    async def go() -> dict[tuple[str, str], float]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="latest", fetch_max_wait_ms=5
        )
        await consumer.start()
        await consumer.getmany(timeout_ms=3000)  # joins the group, gets its partitions
        for tp in consumer.assignment():
            await consumer.position(tp)
        out.put("ready")
        arrived: dict[tuple[str, str], float] = {}
        loop = asyncio.get_running_loop()
        stopping = loop.run_in_executor(None, stop.get)
        while not stopping.done():
            batch = await consumer.getmany(timeout_ms=100)
            now = time.monotonic()
            for msgs in batch.values():
                for m in msgs:
                    r = orjson.loads(m.value)
                    arrived[(r["station_id"], r["observed_at"])] = now
        await consumer.stop()
        return arrived

    out.put(asyncio.run(go()))


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, default=1000)
    p.add_argument("--window", type=int, default=4, help="frames each station keeps outstanding (throughput)")
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--idle", type=int, default=10_000)
    p.add_argument("--client-procs", type=int, default=2)
    p.add_argument("--bootstrap", help="a running broker (default: start a local one)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "gateway.json")
    p.add_argument("--skip-echo", action="store_true")
    args = p.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    want = args.idle + args.connections + 4096
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (want, max(hard, want)) if hard != resource.RLIM_INFINITY else (want, hard)
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    kafka = None
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(),
        "versions": versions(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    try:
        if not args.skip_echo:
            port = free_port()
            echo = Server(
                "echo", [sys.executable, "-c", ECHO, str(port)], dict(os.environ), port, tmp / "echo.log"
            )
            try:
                print("raw asyncio echo server (the limit):", flush=True)
                results["echo"] = measure(echo, args)
            finally:
                echo.stop()
        if args.bootstrap:
            bootstrap = args.bootstrap
        else:
            from airgrid.kafka.local import LocalKafka

            kafka = LocalKafka(port=free_port(), controller_port=free_port(), data_dir=tmp / "kafka")
            kafka.start(timeout=180)
            bootstrap = kafka.bootstrap
        prefix = f"bench{uuid.uuid4().hex[:6]}."
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRGRID_")}
        env.update(
            AIRGRID_BROKER=f"kafka://{bootstrap}",
            AIRGRID_TOPIC_PREFIX=prefix,
            AIRGRID_GRID_FILE=str(make_directory(tmp / "grids.json", max(args.connections, args.idle))),
            AIRGRID_LOG_LEVEL="WARNING",
            AIRGRID_MAX_READING_AGE_DAYS="3650",
            AIRGRID_GATEWAY_LISTEN=f"127.0.0.1:{port}",
            AIRGRID_GATEWAY_WEB=f"127.0.0.1:{free_port()}",
            AIRGRID_GATEWAY_MAX_CONNECTIONS=str(args.idle + args.connections + 100),
            AIRGRID_GATEWAY_IDLE_TIMEOUT_SECONDS="3600",
        )
        gw = Server("gateway", [sys.executable, "-m", "airgrid", "gateway"], env, port, tmp / "gateway.log")
        try:
            print(f"airgrid gateway (Kafka {bootstrap}):", flush=True)
            results["gateway"] = measure(gw, args, KafkaReader(bootstrap, prefix + "readings"))
        finally:
            gw.stop()
    finally:
        if kafka is not None:
            kafka.close()
    results["loadavg_end"] = loadavg()
    results["cpus"] = os.cpu_count()
    _table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {args.out}")
    return 0


def _table(results: dict[str, Any]) -> None:
    rows = [
        ("frames/s, 1,000 connections, 4 frames outstanding", "throughput_fps", None),
        ("frames/s, 1,000 connections, stop-and-wait", "throughput_fps_stop_and_wait", None),
        ("server process CPU share during it", "server_cpu_share", None),
        ("frame -> answer p99 at 10 % (ms)", "latency_answer_at_10pct", "p99_ms"),
        ("frame -> answer p99 at 25 % (ms)", "latency_answer_at_25pct", "p99_ms"),
        ("offered at 50 % (frames/s)", "latency_offered_fps", None),
        ("frame -> answer p50 (ms)", "latency_answer", "p50_ms"),
        ("frame -> answer p99 (ms)", "latency_answer", "p99_ms"),
        ("frame -> reading read from Kafka p50 (ms)", "latency_on_kafka", "p50_ms"),
        ("frame -> reading read from Kafka p99 (ms)", "latency_on_kafka", "p99_ms"),
        ("MiB per 10,000 idle connections", "mib_per_10k_idle", None),
    ]
    print()
    print(f"| {'':50} | {'echo (limit)':>14} | {'gateway':>14} | target |")
    print(f"|{'-' * 52}|{'-' * 16}|{'-' * 16}|--------|")
    targets = {"throughput_fps": ">= 10,000", "latency_answer": "< 50", "mib_per_10k_idle": "< 100"}
    for label, key, sub in rows:
        cells = []
        for name in ("echo", "gateway"):
            v = results.get(name, {}).get(key)
            if sub is not None:
                v = v.get(sub) if isinstance(v, dict) else None
            cells.append("-" if v is None else f"{v:,}" if isinstance(v, int) else str(v))
        target = targets.get(key, "") if sub is None or (key == "latency_answer" and sub == "p99_ms") else ""
        print(f"| {label:50} | {cells[0]:>14} | {cells[1]:>14} | {target} |")


if __name__ == "__main__":
    raise SystemExit(main())
