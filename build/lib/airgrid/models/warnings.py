"""Heavy-pollution warnings on the ``warnings`` topic (key: the city or region)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from airgrid.models.common import Message, Timestamp

WarningLevel = Literal["none", "blue", "yellow", "orange", "red"]


class PollutionWarning(Message):
    """The warning level in force for a city or region, as issued by the authority (or ops)."""

    schema_version: Literal[1] = 1
    city: str = Field(
        min_length=1,
        max_length=200,
        description="the directory's city, or a region: a level-1 or level-2 grid id (a district or a "
        "street); a station is under the strictest level of its city and its regions; also the key",
    )
    level: WarningLevel = Field(description="none lifts a warning")
    issued_at: Timestamp = Field(description="a message older than the one in force is ignored")
    valid_until: Timestamp | None = Field(None, description="the level lapses to none after this")
    note: str = ""
