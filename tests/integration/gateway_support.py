"""The real ``airgrid gateway`` process for integration tests, and a station's TCP socket."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from airgrid.devkafka import free_port
from airgrid.gateway.frame import Frame, Framer
from airgrid.gateway.segment import Segment, parse_segment
from airgrid.streams.demo import wait_http
from tests.helpers import REPO


def gateway_env(worker: dict[str, str], **extra: str) -> dict[str, str]:
    """A gateway beside a worker of ``worker_env``: same broker, topics and directory."""
    env = dict(worker)
    env.update(
        AIRGRID_GATEWAY_LISTEN=f"127.0.0.1:{free_port()}",
        AIRGRID_GATEWAY_WEB=f"127.0.0.1:{free_port()}",
        AIRGRID_GATEWAY_SHUTDOWN_GRACE_SECONDS="5",
    )
    env.update(extra)
    return env


@dataclass
class GatewayProcess:
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return int(self.env["AIRGRID_GATEWAY_LISTEN"].rpartition(":")[2])

    @property
    def web(self) -> str:
        return "http://" + self.env["AIRGRID_GATEWAY_WEB"]

    def start(self, wait: float = 60.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "airgrid", "gateway"],
            env=self.env,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
        if not wait_http(self.web + "/health", wait, self.proc):
            raise AssertionError(
                f"gateway not healthy after {wait}s (exit {self.proc.poll()}):\n{self.tail()}"
            )

    def metric(self, name: str, **labels: str) -> float:
        import urllib.request

        with urllib.request.urlopen(self.web + "/metrics", timeout=5) as resp:
            text = resp.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith((name + "{", name + " ")):
                head, _, value = line.rpartition(" ")
                if all(f'{k}="{v}"' in head for k, v in labels.items()):
                    total += float(value)
        return total

    def stop(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise AssertionError(f"gateway ignored SIGTERM for {timeout}s:\n{self.tail()}") from None
        return self.proc.returncode

    def kill(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class Station:
    """A station's socket to the gateway: send bytes, collect the frames that come back."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    framer: Framer = field(default_factory=Framer)
    got: list[Segment] = field(default_factory=list)

    @classmethod
    async def connect(cls, port: int) -> Station:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self, qn: str, timeout: float = 30.0, nth: int = 1) -> Segment:
        """The ``nth`` frame the gateway sent with this QN (an answer to a frame sent again)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            mine = [seg for seg in self.got if seg.qn == qn]
            if len(mine) >= nth:
                return mine[nth - 1]
            with contextlib.suppress(TimeoutError):
                data = await asyncio.wait_for(self.reader.read(4096), max(0.01, deadline - time.monotonic()))
                if not data:
                    break
                for item in self.framer.feed(data):
                    if isinstance(item, Frame):
                        seg = parse_segment(item.segment)
                        assert isinstance(seg, Segment), seg
                        self.got.append(seg)
        raise AssertionError(f"no answer {nth} to QN {qn} within {timeout}s; got {self.got}")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
