"""A monitoring-station reading, as published on the ``readings`` topic."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, FiniteFloat

from airgrid.models.common import Message, Pollutant, StationId, Timestamp

# HJ 212 data flags; only N (normal) and S (manually entered) count toward averages.
Hj212Flag = Literal["N", "F", "M", "S", "D", "C", "T", "B"]
VALID_FLAGS: frozenset[str] = frozenset({"N", "S"})


class Wind(Message):
    """Wind at the station: speed in m/s, direction the wind comes FROM, degrees clockwise."""

    speed: FiniteFloat = Field(ge=0, le=100)
    direction: FiniteFloat = Field(ge=0, lt=360)


class Reading(Message):
    """One station's concentrations averaged over ``interval_s`` seconds ending at ``observed_at``.

    Units: µg/m³ for every pollutant except CO, in mg/m³.
    """

    schema_version: Literal[1] = 1
    station_id: StationId
    observed_at: Timestamp = Field(description="end of the averaging interval (event time)")
    interval_s: int = Field(3600, ge=1, le=86400, description="averaging interval in seconds")
    values: dict[Pollutant, FiniteFloat] = Field(min_length=1)
    flags: dict[Pollutant, Hj212Flag] = Field(default_factory=dict)
    wind: Wind | None = None

    def valid_values(self) -> dict[Pollutant, float]:
        """Concentrations whose HJ 212 flag lets them into averages."""
        return {p: v for p, v in self.values.items() if self.flags.get(p, "N") in VALID_FLAGS}
