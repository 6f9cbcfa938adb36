"""A monitoring-station reading, as published on the ``readings`` topic."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, FiniteFloat, Strict, model_validator

from airgrid.models.common import Message, Pollutant, StationId, Timestamp

# The only units a station can report in (GB 3095): µg/m³, and mg/m³ for CO.
UNITS: dict[str, frozenset[str]] = {
    p: frozenset({"mg/m3", "mg/m³"}) if p == "co" else frozenset({"ug/m3", "µg/m3", "µg/m³", "ug/m³"})
    for p in ("pm25", "pm10", "so2", "no2", "co", "o3")
}

# HJ 212 data flags; only N (normal) and S (manually entered) count toward averages.
Hj212Flag = Literal["N", "F", "M", "S", "D", "C", "T", "B"]
VALID_FLAGS: frozenset[str] = frozenset({"N", "S"})


# A concentration is a JSON number: not a string, not a boolean, not NaN or infinity.
Concentration = Annotated[float, Strict(), Field(allow_inf_nan=False)]


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
    values: dict[Pollutant, Concentration] = Field(min_length=1)
    flags: dict[Pollutant, Hj212Flag] = Field(default_factory=dict)
    wind: Wind | None = None
    units: dict[Pollutant, str] = Field(
        default_factory=dict, description="optional declared units; only µg/m³ (CO: mg/m³) is accepted"
    )

    @model_validator(mode="after")
    def _units(self) -> Reading:
        for pollutant, unit in self.units.items():
            if unit not in UNITS[pollutant]:
                want = "mg/m3" if pollutant == "co" else "ug/m3"
                raise ValueError(f"unit {unit!r} is not possible for {pollutant}: stations report {want}")
        return self

    def valid_values(self) -> dict[Pollutant, float]:
        """Concentrations whose HJ 212 flag lets them into averages (a new dict, the caller's)."""
        if not self.flags:  # the common case: every value is normal
            return dict(self.values)
        return {p: v for p, v in self.values.items() if self.flags.get(p, "N") in VALID_FLAGS}


class StationCommand(Message):
    """An internal command to the detection owner of a station (topic ``station-commands``).

    Timers may not write tables, so the silence sweep sends this; the ingest agent applies it."""

    schema_version: Literal[1] = 1
    command: Literal["check_silence"] = "check_silence"
    station_id: StationId
    at: Timestamp
