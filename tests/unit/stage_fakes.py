"""What the stages get from the outside world, as plain objects: topics that record what they are
sent (and can fail like a killed process), dicts for tables, a fixed clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel

from airgrid.models.codecs import encode
from airgrid.stages.ports import Delivery

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


class Crash(Exception):
    """The process died here."""


class FakeTopic:
    """An ``Outlet``: keeps what it is sent; ``fail_next`` sends raise ``Crash``; with ``hold`` the
    acknowledgements wait until ``ack_all`` (Kafka has not answered yet)."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.keys: list[bytes | None] = []
        self.fail_next = 0
        self.hold = False
        self.pending: list[asyncio.Future[None]] = []

    async def send(self, *, key: bytes | None = None, value: bytes = b"") -> Any:
        if self.fail_next:
            self.fail_next -= 1
            raise Crash
        self.sent.append(value)
        self.keys.append(key)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.hold:
            self.pending.append(done)
        else:
            done.set_result(None)
        return done

    def ack_all(self) -> None:
        for fut in self.pending:
            if not fut.done():
                fut.set_result(None)
        self.pending.clear()

    def json(self) -> list[dict[str, Any]]:
        return [orjson.loads(v) for v in self.sent]


def on(topic: str, message: BaseModel | bytes, key: str | None = None, offset: int = 0) -> Delivery:
    """A message as a stage receives it from ``topic``."""
    value = message if isinstance(message, bytes) else encode(message)
    return Delivery(topic, 0, offset, key.encode() if key else None, value)
