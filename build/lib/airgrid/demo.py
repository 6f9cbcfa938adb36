"""``airgrid demo``: the whole loop on a local broker, with live output. Ctrl-C stops it all, and
so do SIGTERM (``kill``, a service manager) and SIGHUP (the terminal closed)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from airgrid.config.settings import DATA_DIR, Settings, load_settings
from airgrid.domain.directory import Directory
from airgrid.kafka.local import LocalKafka, broker_answers
from airgrid.kafka.topics import ensure_topics
from airgrid.ops.watch import watch
from airgrid.sim.hj212 import Hj212Target, run_hj212_stations
from airgrid.sim.runner import GridWorkers, SimConfig, SimStats, run_workers

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _say(text: str) -> None:
    # after a SIGHUP the terminal may be gone: a failed print must not skip stopping what we started
    with contextlib.suppress(OSError, ValueError):
        print(f"\x1b[1m==> {text}\x1b[0m" if sys.stdout.isatty() else f"==> {text}", flush=True)


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[list[int]]:
    """Ctrl-C (SIGINT), SIGTERM and SIGHUP cancel the demo's task, so that its ``finally`` stops
    the worker and the broker (both run in their own sessions: no signal reaches them but ours).
    Python's default for SIGTERM or SIGHUP ends the process at once and leaves both running, and
    a demo started in the background by a script inherits SIGINT ignored. Only the first signal
    cancels: a second one must not interrupt the stopping. Yields the signals seen."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    seen: list[int] = []

    def stop(signum: int) -> None:
        seen.append(signum)
        if len(seen) == 1 and task is not None:
            _say(f"{signal.Signals(signum).name}: stopping")
            task.cancel()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop, sig)
    try:
        yield seen
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fh = log_path.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "airgrid", "worker", "-l", "info"],
        env=env,
        stdout=fh,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
            if resp.status == 200:
                return True
        time.sleep(0.3)
    return False


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def start_gateway(
    env: dict[str, str], log_path: Path, wait: float = 60.0
) -> tuple[subprocess.Popen[bytes], Hj212Target]:
    """``airgrid gateway`` as a process of its own (the demo's), healthy; its address for stations."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "airgrid", "gateway"],
        env=env,
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    listen = env.get("AIRGRID_GATEWAY_LISTEN", "127.0.0.1:9212")
    web = env.get("AIRGRID_GATEWAY_WEB", "127.0.0.1:6067")
    if not wait_http(f"http://{web}/health", wait, proc):
        raise RuntimeError(f"the gateway did not become healthy; see {log_path}")
    host, _, port = listen.rpartition(":")
    return proc, Hj212Target("127.0.0.1" if host in ("0.0.0.0", "") else host, int(port))


async def run_demo(base: Settings, broker_given: bool, cfg: SimConfig) -> int:
    """Run the demo until Ctrl-C, SIGTERM or SIGHUP (exit code 128 + the signal number)."""
    with _stop_on_signals() as seen:
        try:
            return await _demo(base, broker_given, cfg)
        except asyncio.CancelledError:
            if not seen:
                raise  # Ctrl-C: asyncio.run turns it into KeyboardInterrupt
            return 128 + seen[0]


async def _demo(base: Settings, broker_given: bool, cfg: SimConfig) -> int:
    root = base.data_dir.parent / "demo"
    if root.exists():
        shutil.rmtree(root)  # every demo starts from a clean broker and clean tables
    kafka: LocalKafka | None = None
    worker: subprocess.Popen[bytes] | None = None
    gateway: subprocess.Popen[bytes] | None = None
    env = dict(os.environ)
    env.setdefault("AIRGRID_POLICY_FILE", str(DATA_DIR / "policy-demo.toml"))
    env["AIRGRID_DATA_DIR"] = str(root / "worker")
    env.setdefault("AIRGRID_APP_ID", "airgrid-demo")
    try:
        if broker_given:
            if not broker_answers(base.bootstrap_servers, 5):
                print(
                    f"airgrid demo: no Kafka broker answers at {base.broker} (AIRGRID_BROKER)",
                    file=sys.stderr,
                )
                return 1
            _say(f"Using the Kafka broker at {base.broker}")
        else:
            port = int(base.bootstrap_servers.split(",")[0].rsplit(":", 1)[1])
            kafka = LocalKafka(port=port, data_dir=root / "kafka")
            _say(
                f"Starting Apache Kafka (KRaft) on 127.0.0.1:{port} (the first run downloads its "
                "jars with Maven)"
            )
            took = kafka.start(timeout=120)
            _say(f"Kafka ready in {took:.1f}s; its log: {kafka.log_file}")
            env["AIRGRID_BROKER"] = f"kafka://{kafka.bootstrap}"
        settings = load_settings(
            broker=env.get("AIRGRID_BROKER", base.broker),
            data_dir=root / "worker",
            policy_file=Path(env["AIRGRID_POLICY_FILE"]),
        )
        await ensure_topics(settings)
        log_path = root / "worker.log"
        _say(f"Starting the airgrid worker (log: {log_path})")
        worker = start_worker(env, log_path)
        health = f"http://{settings.web_host}:{settings.web_port}/health"
        if not await asyncio.to_thread(wait_http, health, 90, worker):
            print(f"airgrid demo: the worker did not become healthy; see {log_path}", file=sys.stderr)
            return 1
        metrics_url = f"http://{settings.web_host}:{settings.web_port}/metrics"
        _say(f"Worker up. Metrics: {metrics_url}   Projection: {settings.sqlalchemy_url}")
        _say(f"Starting the HJ 212 station gateway (log: {root / 'gateway.log'})")
        gateway, target = await asyncio.to_thread(start_gateway, env, root / "gateway.log")
        _say(f"Gateway up on {target.host}:{target.port}: the stations speak HJ 212-2017 to it over TCP")
        _say(
            f"Simulating {cfg.stations} stations ({cfg.step_minutes} min of event time every "
            f"{cfg.tick_seconds}s); workers answer about half the tasks, the rest escalate. "
            "Ctrl-C stops everything."
        )
        directory = Directory.load(settings.grid_file)
        stats = SimStats()
        jobs = [
            asyncio.create_task(run_hj212_stations(settings, directory, cfg, target, stats)),
            asyncio.create_task(run_workers(settings, directory, GridWorkers(directory), stats)),
            asyncio.create_task(watch(settings)),
        ]
        try:
            done, _ = await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED)
            for job in done:
                job.result()
        finally:
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)
            elapsed = time.perf_counter() - stats.started
            _say(
                f"Sent {stats.readings} readings ({stats.readings / max(elapsed, 1e-9):.0f}/s), "
                f"{stats.malformed} malformed, {stats.feedback} feedback in {elapsed:.0f}s"
            )
        return 0
    finally:
        if gateway is not None:
            _say("Stopping the gateway")
            await asyncio.to_thread(stop_process, gateway)
        if worker is not None:
            _say("Stopping the worker")
            await asyncio.to_thread(stop_process, worker)
        if kafka is not None:
            _say("Stopping Kafka")
            await asyncio.to_thread(kafka.stop)
