"""Shared field types of the public messages."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, StringConstraints

StationId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
GridId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
WorkerId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:@-]{1,64}$")]
TaskId = Annotated[str, StringConstraints(pattern=r"^T-[A-Za-z0-9_.:-]{1,64}-[0-9A-Za-z]{1,32}$")]

Pollutant = Literal["pm25", "pm10", "so2", "no2", "co", "o3"]
POLLUTANTS: tuple[Pollutant, ...] = ("pm25", "pm10", "so2", "no2", "co", "o3")
Severity = Literal["info", "minor", "major", "critical"]
GridLevel = Literal[1, 2, 3]

Timestamp = AwareDatetime


class Message(BaseModel):
    """Base of every public message: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")
