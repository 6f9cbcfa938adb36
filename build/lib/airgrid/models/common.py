"""Shared field types of the public messages."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

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


M = TypeVar("M", bound=BaseModel)
_new = object.__new__
_set = object.__setattr__


def trusted(cls: type[M], values: dict[str, Any]) -> M:
    """An instance of ``cls`` from values its caller built itself, without validation.

    ``model_construct`` without its per-field work (a third of the cost): ``values`` must hold
    every field, in the model's field order (the JSON follows the order of the dict). For the hot
    path only, where the values are the code's own; the tests compare the result with
    ``model_validate`` of the same values."""
    m = _new(cls)
    _set(m, "__dict__", values)
    _set(m, "__pydantic_fields_set__", set(values))
    _set(m, "__pydantic_extra__", None)
    _set(m, "__pydantic_private__", None)
    return m
