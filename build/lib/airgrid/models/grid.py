"""The grid directory: three levels of supervision grids, their workers and the stations."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, FiniteFloat, SecretStr, StringConstraints, field_validator

from airgrid.models.common import GridId, GridLevel, Message, StationId, WorkerId

# HJ 212 station code (MN): 24 characters in HJ 212-2017, 14 in HJ/T 212-2005; letters and digits.
Mn = Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z]{1,24}$")]
# HJ 212 access password (PW): 6 characters in the standard; printable ASCII without ; , = & (the
# frame's separators), at most 32 characters.
PASSWORD_FORBIDDEN = frozenset(";,=&")


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
    mn: Mn | None = Field(
        None, description="HJ 212 station code (MN) its data acquisition unit sends in every frame; unique"
    )
    pw: SecretStr | None = Field(
        None,
        description="HJ 212 access password (PW) the station must send; none: any password is accepted. "
        "Never logged, never in metrics or dead letters",
    )

    @field_validator("pw")
    @classmethod
    def _password(cls, value: SecretStr | None) -> SecretStr | None:
        # the message never shows the value: a directory check prints it
        if value is None:
            return None
        text = value.get_secret_value()
        if not 1 <= len(text) <= 32:
            raise ValueError("an HJ 212 password has 1 to 32 characters")
        if any(not "!" <= ch <= "~" or ch in PASSWORD_FORBIDDEN for ch in text):
            raise ValueError("an HJ 212 password is printable ASCII without spaces, ';', ',', '=' or '&'")
        return value


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
