"""What a stage needs from the outside world, as plain types: no Faust, no Kafka client.

The binding (worker/binding.py) hands a stage Faust's topics and tables, which fit these
protocols; unit tests hand it dicts and lists (tests/unit/stage_fakes.py).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from airgrid.models.codecs import dead_letter, encode, letter_key
from airgrid.models.dlq import Origin

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One consumed message: where it came from, and its bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @property
    def origin(self) -> Origin:
        return Origin(topic=self.topic, partition=self.partition, offset=self.offset)

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}@{self.offset}"


class Outlet(Protocol):
    """A topic to write to; awaiting ``send`` hands the message over and returns its
    acknowledgement, which completes once Kafka has it (acks=all)."""

    async def send(self, *, key: bytes | None, value: bytes) -> Awaitable[Any]: ...


class Table(Protocol):
    """A changelog-backed table of this worker's partitions (a dict in tests)."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def __setitem__(self, key: str, value: Any) -> None: ...

    def pop(self, key: str, default: Any = None) -> Any: ...

    def items(self) -> Iterator[tuple[str, Any]] | Any: ...


async def refuse(outlet: Outlet, msg: Delivery, code: str, reason: str, at: datetime) -> None:
    """Send ``msg`` to a dead-letter topic with why and where it came from (keyed as it was, the
    key clipped to KEY_LIMIT)."""
    letter = dead_letter(
        reason=reason,
        code=code,
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=msg.key,
        value=msg.value,
        at=at,
    )
    await outlet.send(key=letter_key(msg.key), value=encode(letter))
    log.warning("%s dead-lettered (%s): %s", msg, code, reason)
