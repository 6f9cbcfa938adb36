"""A real, local Apache Kafka broker (KRaft, single node) without Docker; ``cluster.py`` runs
several of them as one cluster.

The broker jars are resolved from Maven Central with ``scripts/kafka/pom.xml`` into a cache
folder (``.cache/kafka/lib`` at the repo root, or ``$AIRGRID_KAFKA_CACHE_DIR/lib``) and the
broker runs as ``java -cp '<lib>/*' kafka.Kafka server.properties`` in its own process group.
Readiness is verified with a raw-socket Kafka Metadata request (stdlib only). ``airgrid kafka
run|fetch|check|stop`` drives it from the command line.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import uuid
import weakref
from collections import deque
from pathlib import Path
from typing import IO, Self

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
POM_PATH = REPO_ROOT / "scripts" / "kafka" / "pom.xml"
CACHE_ENV = "AIRGRID_KAFKA_CACHE_DIR"
KAFKA_JAR_GLOB = "kafka_2.13-*.jar"
PID_FILE = "kafka.pid"
_LOG4J = """\
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c{1})%n
log4j.logger.kafka.server.KafkaRaftServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
log4j.logger.kafka.server.BrokerLifecycleManager=INFO
log4j.logger.kafka.network.DataPlaneAcceptor=INFO
log4j.logger.kafka.Kafka$=INFO
"""


class DevKafkaError(RuntimeError):
    """Base error of the local Kafka helper."""


class KafkaStartError(DevKafkaError):
    """The broker could not be prepared or did not become ready."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by peer")
        buf += chunk
    return bytes(buf)


def _metadata_brokers(host: str, port: int, timeout: float) -> int:
    """Send a Metadata v4 request (no topics); return how many brokers it lists (0: no answer)."""
    correlation_id = 0x41_49_52  # "AIR"
    client_id = b"airgrid-devkafka"
    # header v1: api_key=3 (Metadata), api_version=4, correlation_id, client_id
    # body v4: topics=[] (empty array), allow_auto_topic_creation=false
    payload = struct.pack(">hhih", 3, 4, correlation_id, len(client_id)) + client_id
    payload += struct.pack(">ib", 0, 0)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        if not 12 <= size <= 10_000_000:
            return 0
        body = _recv_exact(sock, size)
    got_cid, _throttle, n_brokers = struct.unpack_from(">iii", body, 0)
    if got_cid != correlation_id or n_brokers < 1:
        return 0
    _node_id, host_len = struct.unpack_from(">ih", body, 12)
    return n_brokers if 0 < host_len < size else 0  # the first broker entry carries a host name


def broker_count(bootstrap: str, timeout: float = 2.0) -> int:
    """How many brokers the first answering ``host:port`` of ``bootstrap`` lists (0: none answers)."""
    for entry in bootstrap.split(","):
        host, _, port = entry.strip().rpartition(":")
        try:
            n = _metadata_brokers(host.strip("[]") or "127.0.0.1", int(port), timeout)
        except (OSError, ValueError, struct.error):
            continue
        if n:
            return n
    return 0


def broker_answers(bootstrap: str, timeout: float = 2.0) -> bool:
    """True if any ``host:port`` of ``bootstrap`` answers a Kafka Metadata request."""
    return broker_count(bootstrap, timeout) > 0


def _group_states(pgid: int) -> list[str]:
    """States (the ``/proc/.../stat`` letter) of every thread of every process in group ``pgid``."""
    states = []
    for stat in Path("/proc").glob("[0-9]*/task/[0-9]*/stat"):
        try:
            raw = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        fields = raw[raw.rfind(")") + 2 :].split()  # after "pid (comm) ": state, ppid, pgrp, ...
        if len(fields) > 2 and fields[2] == str(pgid):
            states.append(fields[0])
    return states


def new_cluster_id() -> str:
    """A Kafka-style cluster id: base64url (no padding) of 16 random bytes."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):  # Kafka avoids ids that look like CLI flags
            return cid


def _tail(path: Path, lines: int = 40) -> str:
    try:
        data = path.read_bytes()[-256 * 1024 :].decode("utf-8", "replace")
    except OSError:
        return "(no broker log)"
    return "\n".join(data.splitlines()[-lines:])


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise KafkaStartError("`java` not found on PATH: install a JDK/JRE 17+ to run Kafka")
    return java


def default_cache_dir() -> Path:
    """``$AIRGRID_KAFKA_CACHE_DIR`` or ``<repo>/.cache/kafka``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else REPO_ROOT / ".cache" / "kafka"


def fetch_jars(cache_dir: Path | None = None) -> Path:
    """Resolve the broker jars into ``<cache>/lib`` with Maven, unless already there."""
    cache_dir = (REPO_ROOT / (cache_dir or default_cache_dir())).resolve()
    lib = cache_dir / "lib"
    if any(lib.glob(KAFKA_JAR_GLOB)):
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaStartError("`mvn` not found on PATH: install Maven 3 to fetch the Kafka jars")
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="lib-", dir=cache_dir))
    cmd = [mvn, "-B", "-Dstyle.color=never", "-f", str(POM_PATH)]
    cmd += ["dependency:copy-dependencies", f"-DoutputDirectory={tmp}"]
    log.info("fetching Kafka jars with Maven into %s (first run only)", lib)
    started = time.monotonic()
    tail: deque[str] = deque(maxlen=30)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for raw in proc.stdout or ():
        line = raw.rstrip()
        tail.append(line)
        jar_dl = "Downloaded from" in line and ".jar " in line
        log.log(logging.INFO if jar_dl or "BUILD" in line else logging.DEBUG, "mvn: %s", line)
    if proc.wait() != 0 or not any(tmp.glob(KAFKA_JAR_GLOB)):
        shutil.rmtree(tmp, ignore_errors=True)
        raise KafkaStartError("Maven could not fetch the Kafka jars:\n" + "\n".join(tail))
    if lib.exists() and not any(lib.glob(KAFKA_JAR_GLOB)):
        shutil.rmtree(lib, ignore_errors=True)  # leftover of an interrupted fetch
    try:
        tmp.rename(lib)  # atomic publish; a concurrent fetch may have won the race
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not any(lib.glob(KAFKA_JAR_GLOB)):
            raise
    log.info("Kafka jars ready in %s (%.1fs)", lib, time.monotonic() - started)
    return lib


_RUNNING: weakref.WeakSet[LocalKafka] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:  # never leave a broker behind when the interpreter exits
    for kafka in list(_RUNNING):
        with contextlib.suppress(Exception):
            kafka.close()


class LocalKafka:
    """A single-node KRaft broker (broker+controller) bound to 127.0.0.1."""

    def __init__(
        self,
        *,
        port: int = 9092,
        controller_port: int | None = None,
        data_dir: str | Path | None = None,
        cache_dir: str | Path | None = None,
        log_file: str | Path | None = None,
        extra_props: dict[str, str] | None = None,
        scram_users: dict[str, str] | None = None,
        cluster_id: str | None = None,
    ) -> None:
        self.port = port
        self.controller_port = controller_port if controller_port is not None else port + 1
        self._owns_data_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="airgrid-kafka-")).resolve()
        self.cache_dir = (REPO_ROOT / (cache_dir or default_cache_dir())).resolve()
        self.log_file = Path(log_file) if log_file else self.data_dir / "broker.log"
        self.extra_props = dict(extra_props or {})
        # SCRAM-SHA-512 credentials written into the metadata when the storage is formatted
        self.scram_users = dict(scram_users or {})
        # the nodes of one cluster format their storage with the same id (airgrid.kafka.cluster)
        self.cluster_id = cluster_id or new_cluster_id()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_fh: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def ensure_jars(self) -> Path:
        """Resolve the broker jars into ``<cache>/lib`` (runs Maven only when missing)."""
        return fetch_jars(self.cache_dir)

    def _props(self) -> dict[str, str]:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir / "kraft-logs"),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.partitions": "1",
            "auto.create.topics.enable": "true",
            # after a kill the controller refuses re-registration until the old session
            # expires (default 9s); keep that short so crash/restart tests stay fast
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "3000",
        }
        props.update(self.extra_props)
        return props

    def _write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cfg = self.data_dir / "server.properties"
        cfg.write_text("".join(f"{k}={v}\n" for k, v in self._props().items()))
        (self.data_dir / "log4j.properties").write_text(_LOG4J)
        return cfg

    def _java_cmd(self, java: str, lib: Path, main: str, *args: str) -> list[str]:
        log4j = f"-Dlog4j.configuration=file:{self.data_dir / 'log4j.properties'}"
        return [java, "-Xmx512m", "-Djava.awt.headless=true", log4j, "-cp", f"{lib}/*", main, *args]

    def _check_port(self, port: int) -> None:
        if _port_free(port):
            return
        if broker_answers(f"127.0.0.1:{port}", 2.0):
            raise KafkaStartError(f"port {port} is already used by another Kafka broker")
        raise KafkaStartError(f"port {port} is already in use by something that is not Kafka")

    def start(self, timeout: float = 60.0) -> float:
        """Start the broker and wait until it answers a Metadata request; return seconds."""
        if self.is_running():
            return 0.0
        started = time.monotonic()
        self.launch()
        self.wait_ready(timeout)
        elapsed = time.monotonic() - started
        assert self._proc is not None
        log.info("Kafka ready on %s (pid %d, %.1fs)", self.bootstrap, self._proc.pid, elapsed)
        return elapsed

    def launch(self) -> None:
        """Format the storage on the first run and start the broker's process; return at once.
        A node of a cluster cannot answer until a majority of the controllers runs, so the
        cluster launches every node before it waits for any (:meth:`wait_ready`)."""
        if self.is_running():
            return
        self.stop()  # reap a broker that died on its own, release its log handle
        java = _java()
        self._check_port(self.port)
        self._check_port(self.controller_port)
        lib = self.ensure_jars()
        cfg = self._write_config()
        log_dir = Path(self._props()["log.dirs"])
        if not (log_dir / "meta.properties").exists():
            scram = [
                arg
                for user, password in self.scram_users.items()
                for arg in ("--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]")
            ]
            fmt = self._java_cmd(
                java, lib, "kafka.tools.StorageTool", "format", "-t", self.cluster_id, "-c", str(cfg), *scram
            )
            res = subprocess.run(fmt, capture_output=True, text=True, timeout=120, check=False)
            if res.returncode != 0:
                out = "\n".join((res.stdout + res.stderr).splitlines()[-40:])
                raise KafkaStartError(f"kafka StorageTool format failed:\n{out}")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log_fh = self.log_file.open("ab")
        self._log_fh.write(f"=== airgrid.kafka.local start {time.ctime()} ===\n".encode())
        self._log_fh.flush()
        self._proc = subprocess.Popen(
            self._java_cmd(java, lib, "kafka.Kafka", str(cfg)),
            stdin=subprocess.DEVNULL,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
            start_new_session=True,
        )
        _RUNNING.add(self)
        (self.data_dir / PID_FILE).write_text(f"{self._proc.pid}\n")

    def wait_ready(self, timeout: float, brokers: int = 1) -> None:
        """Wait up to ``timeout`` seconds until the launched broker answers a Metadata request
        listing at least ``brokers`` brokers; stop it and raise if it exits or does not answer."""
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                self.stop()
                raise KafkaStartError(
                    f"Kafka exited with code {code} during startup; broker log tail "
                    f"({self.log_file}):\n{_tail(self.log_file)}"
                )
            if broker_count(self.bootstrap, 1.0) >= brokers:
                return
            if time.monotonic() > deadline:
                self.stop()
                raise KafkaStartError(
                    f"Kafka did not answer on {self.bootstrap} within {timeout:.0f}s; broker "
                    f"log tail ({self.log_file}):\n{_tail(self.log_file)}"
                )
            time.sleep(0.2)

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is None or self._proc.poll() is not None:
            raise DevKafkaError("the Kafka broker is not running")
        os.killpg(self._proc.pid, sig)

    def pause(self, timeout: float = 10.0) -> None:
        """Freeze the broker (SIGSTOP): connections stay open but nothing is answered.

        Returns once every process of the broker's group is stopped: ``kill`` returns before a
        busy multi-threaded process has actually stopped, and a request sent in that window was
        still answered (seen once on a loaded machine)."""
        self._signal(signal.SIGSTOP)
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = _group_states(self._proc.pid)
            if states and all(st in "Tt" for st in states):
                return
            time.sleep(0.01)
        raise DevKafkaError(f"the broker did not stop within {timeout}s of SIGSTOP")

    def resume(self) -> None:
        """Unfreeze a paused broker (SIGCONT)."""
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        """Crash the broker (SIGKILL, no clean shutdown); data dir is kept."""
        self._signal(signal.SIGKILL)
        self.stop()

    def terminate(self) -> None:
        """Ask the broker to stop (SIGTERM) and return at once; :meth:`stop` waits for it."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)
                os.killpg(self._proc.pid, signal.SIGCONT)  # a paused JVM must run to exit

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the broker: SIGTERM to its process group, SIGKILL after ``timeout``."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                    os.killpg(proc.pid, signal.SIGCONT)  # a paused JVM must run to exit
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    log.warning("Kafka did not stop within %.0fs; killing it", timeout)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # also reaps any stray group member
            proc.wait()
            log.info("Kafka on %s stopped (exit code %s)", self.bootstrap, proc.returncode)
        _RUNNING.discard(self)
        with contextlib.suppress(OSError):
            (self.data_dir / PID_FILE).unlink()
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def restart(self, timeout: float = 60.0) -> float:
        """Stop (cleanly if still running) and start again on the same data dir."""
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Stop the broker and delete the data dir if it is a temp dir we created."""
        self.stop()
        if self._owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def stop_pidfile(data_dir: str | Path, timeout: float = 20.0) -> bool:
    """Stop a broker started (e.g. by ``run``) with this data dir, or every node of a cluster
    (``<data dir>/node<id>``); False if none ran."""
    root = Path(data_dir)
    pids = [pid for f in [root / PID_FILE, *sorted(root.glob(f"node*/{PID_FILE}"))] if (pid := _claim(f))]
    for pid in pids:  # all at once: a cluster's last node stopped alone waits for a lost quorum
        for sig in (signal.SIGTERM, signal.SIGCONT):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
    deadline = time.monotonic() + timeout
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    return bool(pids)


def _claim(pid_file: Path) -> int | None:
    """The pid of the broker ``pid_file`` names, removing the file (which tells a blocking ``run``
    this stop was asked for); None for a missing or stale file."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        pid_file.unlink(missing_ok=True)
        return None
    pid_file.unlink(missing_ok=True)
    return pid if b"kafka.Kafka" in cmdline else None  # else the pid was reused by something else
