"""Dead letters: what could not be processed, with the reason and where it came from."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from airgrid.models.common import Message, Timestamp


class Origin(Message):
    """Where a message was read from."""

    topic: str
    partition: int
    offset: int


class DeadLetter(Message):
    """A message airgrid could not use (on ``readings``, ``alarms`` or an internal command topic),
    or bytes a station sent to ``airgrid gateway`` that became no reading (then ``origin`` is null
    and ``peer`` set)."""

    schema_version: Literal[1] = 1
    reason: str = Field(description="a sentence a person can act on")
    reason_code: str = Field(description="bounded code, also the metric label")
    origin: Origin | None = Field(
        description="where airgrid read the message; null for bytes a gateway refused (see peer)"
    )
    key: str | None = Field(
        description="original key (its first 1024 bytes), decoded as UTF-8 with replacement"
    )
    payload: str = Field(description="original bytes, UTF-8 with replacement, maybe truncated")
    payload_b64: str | None = Field(None, description="original bytes in base64 when not UTF-8")
    at: Timestamp
    peer: str | None = Field(
        None, description="gateway refusals: the station's address (host:port) the bytes came from"
    )
    mn: str | None = Field(None, description="gateway refusals: the HJ 212 station code (MN), when known")
