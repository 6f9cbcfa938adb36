"""The grid directory: three levels of supervision grids, their workers and the stations."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, FiniteFloat

from airgrid.models.common import GridId, GridLevel, Message, StationId, WorkerId


class Grid(Message):
    """A supervision grid; level 1 has no parent, levels 2 and 3 name theirs."""

    id: GridId
    name: str
    level: GridLevel
    parent: GridId | None = None
    key: bool = Field(False, description="key grid: stricter escalation policy")


class Worker(Message):
    """A grid worker (or reviewer), attached to one grid."""

    id: WorkerId
    name: str
    grid: GridId
    role: Literal["worker", "reviewer"] = "worker"


class Station(Message):
    """A monitoring station; located by explicit ``grid`` or by its point in a grid polygon."""

    id: StationId
    name: str
    lon: FiniteFloat = Field(ge=-180, le=180)
    lat: FiniteFloat = Field(ge=-90, le=90)
    grid: GridId | None = None


class GridDirectoryFile(Message):
    """The shipped or deployed directory file (JSON)."""

    schema_version: Literal[1] = 1
    city: str
    boundaries: str | None = Field(
        None,
        description="GeoJSON FeatureCollection of level-3 grid boundaries (path relative to this "
        "file); stations without an explicit grid are located in them",
    )
    grids: list[Grid]
    workers: list[Worker]
    stations: list[Station]
