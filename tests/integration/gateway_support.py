"""The real ``airgrid gateway`` process for integration tests, and a station's TCP socket."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from airgrid.gateway.frame import Frame, Framer
from airgrid.gateway.segment import Segment, parse_segment
from airgrid.kafka.local import free_port
from tests.helpers import Worker


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


class GatewayProcess(Worker):
    """The real ``airgrid gateway`` process (start, metrics, stop, kill as the worker's)."""

    def arguments(self) -> list[str]:
        return ["gateway"]

    @property
    def base_url(self) -> str:
        return "http://" + self.env["AIRGRID_GATEWAY_WEB"]

    @property
    def port(self) -> int:
        return int(self.env["AIRGRID_GATEWAY_LISTEN"].rpartition(":")[2])


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
