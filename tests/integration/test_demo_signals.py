"""``airgrid demo`` stopped by Ctrl-C (SIGINT), ``kill <pid>`` (SIGTERM) or a closed terminal
(SIGHUP) stops the Kafka broker and the worker it started (issue 15, section 5); SIGINT also when
the demo was started in the background with SIGINT ignored, as a script's job inherits it. Real processes: the
demo starts its own broker and worker on free ports; the test signals the demo's pid only."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airgrid.kafka.local import PID_FILE, _port_free, free_port
from tests.helpers import REPO


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is not running
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().split(") ", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _two_free_ports() -> int:
    """A broker port whose next port (the demo's controller port) is free too."""
    for _ in range(50):
        port = free_port()
        if port < 65535 and _port_free(port + 1):
            return port
    raise AssertionError("no two consecutive free ports")


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `cmd &` in a non-interactive shell


@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"]
)
def test_a_signal_to_the_demo_stops_its_broker_worker_and_gateway(
    tmp_path: Path, sig: signal.Signals
) -> None:
    port, web = _two_free_ports(), free_port()
    config = tmp_path / "airgrid.toml"
    config.write_text(
        f'broker = "kafka://127.0.0.1:{port}"\nweb_port = {web}\ndata_dir = "{tmp_path / "airgrid"}"\n'
        'store = "memory"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRGRID_")}
    env["AIRGRID_CONFIG_FILE"] = str(config)
    if "AIRGRID_KAFKA_CACHE_DIR" in os.environ:
        env["AIRGRID_KAFKA_CACHE_DIR"] = os.environ["AIRGRID_KAFKA_CACHE_DIR"]
    out = tmp_path / "demo.out"
    demo = subprocess.Popen(
        [sys.executable, "-m", "airgrid", "demo", "--stations", "2", "--tick", "0.2", "--malformed-every=0"],
        env=env,
        cwd=REPO,
        stdout=out.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # as a terminal's job: its own group, signalled by pid below
        preexec_fn=_ignore_sigint if sig == signal.SIGINT else None,
    )
    pid_file = tmp_path / "demo" / "kafka" / PID_FILE
    started: list[int] = []
    try:
        deadline = time.monotonic() + 240
        while "Simulating" not in out.read_text(errors="replace"):
            assert demo.poll() is None, f"the demo exited early:\n{out.read_text(errors='replace')}"
            assert time.monotonic() < deadline, f"the demo did not start:\n{out.read_text(errors='replace')}"
            time.sleep(0.5)
        broker = int(pid_file.read_text())
        ours = [p for p in _children(demo.pid) if p != broker and "airgrid" in _cmdline(p)]
        commands = sorted(_cmdline(p).split()[3] for p in ours)  # python -m airgrid COMMAND ...
        started = [broker, *ours]
        assert commands == ["gateway", "worker"] and all(_alive(p) for p in started)
        time.sleep(2)  # readings flowing

        os.kill(demo.pid, sig)  # `kill <pid>`, or the terminal closing: the demo's pid only
        code = demo.wait(90)
        text = out.read_text(errors="replace")
        assert code == 128 + sig, text
        assert f"{sig.name}: stopping" in text and "Stopping the gateway" in text
        assert "Stopping the worker" in text and "Stopping Kafka" in text
        assert not [p for p in started if _alive(p)], f"left running: {started}\n{text}"
        assert _port_free(port) and _port_free(web)
        assert not pid_file.exists()
    finally:
        for p in [demo.pid, *started]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p, signal.SIGKILL)
        demo.wait(10)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
