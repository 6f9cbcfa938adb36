"""Shared pieces of the benchmark: environment facts, the bench grid directory, readings, the
real worker process, metrics and memory probes. Imports nothing from airgrid at module level,
so the airgrid code under test can be a frozen snapshot taken at the start of the run."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata as md
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[1]
CHINA = timezone(timedelta(hours=8))
TEN_MIN = 600
# extra environment of every airgrid worker of the run (``--worker-env``)
EXTRA_ENV: dict[str, str] = {}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def versions() -> dict[str, Any]:
    """Library versions and whether aiokafka's C record codec is the one in use."""
    out: dict[str, Any] = {"python": platform.python_version()}
    for dist in (
        "faust-streaming",
        "aiokafka",
        "pydantic",
        "pydantic-core",
        "orjson",
        "rocksdict",
        "SQLAlchemy",
        "mode-streaming",
    ):
        with contextlib.suppress(md.PackageNotFoundError):
            out[dist] = md.version(dist)
    import aiokafka
    import aiokafka.record.default_records as dr
    from aiokafka.util import NO_EXTENSIONS

    pkg = Path(aiokafka.__file__).parent
    out["aiokafka_c_extension"] = {
        "NO_EXTENSIONS": NO_EXTENSIONS,
        "DefaultRecordBatch": f"{dr.DefaultRecordBatch.__module__}.{dr.DefaultRecordBatch.__name__}",
        "active": dr.DefaultRecordBatch.__module__.startswith("aiokafka.record._crecords"),
        "shared_objects": sorted(p.name for p in pkg.rglob("*.so")),
    }
    out["cpus"] = os.cpu_count()
    return out


def snapshot_airgrid(dest: Path, repo: Path = REPO) -> dict[str, str]:
    """Copy airgrid/ so that edits made by others during the run do not change what is measured
    (``repo``: another checkout, for a variant that runs other code)."""
    src = repo / "airgrid"
    shutil.copytree(src, dest / "airgrid", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    h = hashlib.sha256()
    for p in sorted((dest / "airgrid").rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(dest)).encode())
            h.update(p.read_bytes())
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "airgrid"], cwd=repo, capture_output=True, text=True, check=False
    ).stdout.count("\n")
    return {"git_head": head, "uncommitted_files_in_airgrid": str(dirty), "tree_sha256": h.hexdigest()[:16]}


def station_id(i: int) -> str:
    return f"ST-B{i:06d}"


def make_grid_file(snapshot: Path, dest: Path, n: int) -> Path:
    """The shipped directory plus ``n`` bench stations mapped round-robin onto level-3 grids.

    The shipped boundaries stay (some shipped stations are located by them); the bench stations
    have explicit grids and lie outside every polygon, so validation accepts them."""
    data = snapshot / "airgrid" / "config" / "data"
    doc = json.loads((data / "grids.json").read_text())
    l3 = [g["id"] for g in doc["grids"] if g.get("level") == 3]
    if doc.get("boundaries"):
        shutil.copy(data / doc["boundaries"], dest.parent / doc["boundaries"])
    doc["stations"] = list(doc["stations"]) + [
        {"id": station_id(i), "name": f"bench {i}", "lon": 0.0, "lat": 0.0, "grid": l3[i % len(l3)]}
        for i in range(1, n + 1)
    ]
    dest.write_bytes(orjson.dumps(doc))
    return dest


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, CHINA).isoformat()


def reading(station: str, ts: float, pm25: float, rng: random.Random) -> bytes:
    return orjson.dumps(
        {
            "schema_version": 1,
            "station_id": station,
            "observed_at": iso(ts),
            "interval_s": TEN_MIN,
            "values": {
                "pm25": round(pm25, 1),
                "pm10": round(pm25 * 1.6 + rng.uniform(0, 8), 1),
                "so2": round(rng.uniform(5, 12), 1),
                "no2": round(rng.uniform(25, 45), 1),
                "co": round(rng.uniform(0.4, 0.9), 2),
                "o3": round(rng.uniform(40, 80), 1),
            },
        }
    )


def hour_start_before(hours: int) -> float:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return (now - timedelta(hours=hours)).timestamp()


def backlog(n: int, stations: int, first_station: int = 1, seed: int = 1) -> Iterator[tuple[bytes, bytes]]:
    """``n`` readings of ``stations`` stations, 10 minutes apart in event time, interleaved as
    gateways send them; each station has one 1-hour PM2.5 episode (120 µg/m³) every 12 hours,
    so alarms, tasks and task events flow at a realistic share of the readings."""
    rng = random.Random(seed)
    per_station = -(-n // stations)
    base = hour_start_before(per_station // 6 + 3)
    sent = 0
    for j in range(per_station):
        ts = base + (j + 1) * TEN_MIN
        hour = j // 6
        for k in range(stations):
            if sent == n:
                return
            i = first_station + k
            high = (hour + i) % 12 == 0
            pm25 = (120.0 if high else 30.0) + rng.uniform(-5, 5)
            sid = station_id(i)
            yield sid.encode(), reading(sid, ts, pm25, rng)
            sent += 1


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def produce_all(bootstrap: str, topic: str, items: Iterator[tuple[bytes, bytes]]) -> tuple[int, float]:
    """Publish as fast as the producer allows; return (count, seconds)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=512 * 1024
    )
    await producer.start()
    began = time.perf_counter()
    count = 0
    try:
        for key, value in items:
            await producer.send(topic, key=key, value=value)
            count += 1
        await producer.flush()
    finally:
        await producer.stop()
    return count, time.perf_counter() - began


def rss_bytes(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in bytes."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0]) * 1024
    return out


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


@dataclass
class Worker:
    """The real ``airgrid worker`` process, run from the snapshot of airgrid."""

    src: Path  # folder holding the airgrid snapshot
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0

    @classmethod
    def make(
        cls,
        src: Path,
        bootstrap: str,
        name: str,
        data_dir: Path,
        grid_file: Path,
        web_port: int,
        log_path: Path,
        **extra: str,
    ) -> Worker:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRGRID_")}
        env.update(
            PYTHONPATH=str(src),
            AIRGRID_BROKER=f"kafka://{bootstrap}",
            AIRGRID_TOPIC_PREFIX=f"{name}.",
            AIRGRID_APP_ID=f"airgrid-{name}",
            AIRGRID_DATA_DIR=str(data_dir),
            AIRGRID_WEB_PORT=str(web_port),
            AIRGRID_GRID_FILE=str(grid_file),
            AIRGRID_SUPERVISION_ENABLED="false",  # measured alone: no scheduled patrol tasks
        )
        env.update(EXTRA_ENV)
        env.update(extra)
        if "BENCH_GC_PROBE" in env:  # its sitecustomize logs GC pauses
            env["PYTHONPATH"] = f"{src}{os.pathsep}{env['BENCH_GC_PROBE']}"
        return cls(src, env, log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['AIRGRID_WEB_PORT']}"

    def spawn(self) -> None:
        fh = self.log_path.open("ab")
        self.started = time.monotonic()
        # cwd is the snapshot: ``-m`` puts the cwd first on sys.path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "airgrid", "worker", "-l", "info"],
            env=self.env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=self.src,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait_healthy(self, timeout: float = 120.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
            if http_status(self.url + "/health") == 200:
                return time.monotonic() - self.started
            time.sleep(0.1)
        raise RuntimeError(f"worker not healthy after {timeout}s:\n{self.tail()}")

    def metric(self, name: str, **labels: str) -> float | None:
        try:
            with urllib.request.urlopen(self.url + "/metrics", timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            return None
        total = 0.0
        for line in text.splitlines():
            if line.startswith((name + "{", name + " ")):
                head, _, value = line.rpartition(" ")
                if all(f'{k}="{v}"' in head for k, v in labels.items()):
                    total += float(value)
        return total

    def stop(self, timeout: float = 60.0) -> float:
        """SIGTERM the process group; return seconds until it exited."""
        assert self.proc is not None
        began = time.monotonic()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return time.monotonic() - began

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def run_app(
    label: str, argv: list[str], env: dict[str, str], work: Path, timeout: float = 1800
) -> dict[str, Any]:
    """Start a bench app (bench/noop_app.py, bench/peers/*_app.py) in its own process group, wait
    for its result file (``BENCH_OUT``: first, last, count, ...), then stop it with SIGTERM and wait
    until it has exited, so that what it still buffered is produced before its topics are read."""
    out = Path(env["BENCH_OUT"])
    log_path = work / f"{label}.log"
    began = time.time()
    with log_path.open("ab") as fh:
        proc = subprocess.Popen(
            argv, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
        )
    try:
        deadline = time.monotonic() + timeout
        while not out.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{label} failed or timed out, see {log_path}")
            time.sleep(0.1)
        r: dict[str, Any] = json.loads(out.read_text())
    finally:
        stop_began = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
            clean = proc.returncode == 0
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            clean = False
    secs = max(r["last"] - r["first"], 1e-6)
    return {
        **r,
        "seconds": round(secs, 3),
        "readings_per_s": round(r["count"] / secs),
        "seconds_incl_start": round(r["last"] - began, 3),
        "stop_s": round(time.monotonic() - stop_began, 2),
        "exit_clean": clean,
    }


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    v = sorted(values)

    def q(p: float) -> float:
        return round(v[min(len(v) - 1, round(p * (len(v) - 1)))] * 1000, 1)

    return {"n": len(v), "p50_ms": q(0.50), "p95_ms": q(0.95), "p99_ms": q(0.99), "max_ms": q(1.0)}
