"""Settings of ``airgrid gateway`` (``AIRGRID_GATEWAY_*``) and the optional station profiles file.

Separate from the worker's :class:`~airgrid.config.settings.Settings`, which still gives the Kafka
connection, topic prefix, time zone and reading limits: a gateway and a worker of one deployment
share those. Read once at the entry point; a wrong value fails start-up with one line naming the
variable, as ``load_settings`` does.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from airgrid.config.settings import SettingsError
from airgrid.gateway.decode import DEFAULT_UNITS, READING_CNS, Profile, TimeLabel, unit_factor
from airgrid.gateway.frame import CrcMode

PREFIX = "AIRGRID_GATEWAY_"


def _address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("must be host:port (e.g. 0.0.0.0:9212)")
    return value


def _units(value: Any) -> Any:
    """``code=unit,code=unit`` (an environment variable) or a mapping (a profile)."""
    if isinstance(value, str):
        pairs = [item.partition("=") for item in value.split(",") if item.strip()]
        if any(not sep for _, sep, _ in pairs):
            raise ValueError("must be code=unit pairs separated by commas (e.g. a21005=mg/m3,a21026=ppb)")
        value = {code.strip(): unit.strip() for code, _, unit in pairs}
    if isinstance(value, Mapping):
        for code, unit in value.items():
            unit_factor(str(code), str(unit))  # raises ValueError naming the problem
    return value


def _cns(value: Any) -> Any:
    if isinstance(value, str):
        value = [x.strip() for x in value.split(",") if x.strip()]
    if isinstance(value, list | tuple):
        bad = [cn for cn in value if cn not in READING_CNS]
        if bad:
            raise ValueError(
                f"{', '.join(map(str, bad))}: readings come from {', '.join(sorted(READING_CNS))}"
            )
        if not value:
            raise ValueError("name at least one of 2011, 2051, 2061")
    return value


def _zone(value: str | None) -> str | None:
    if value is not None:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
    return value


class GatewaySettings(BaseSettings):
    """Every setting of the gateway. Env ``AIRGRID_GATEWAY_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True, extra="forbid", case_sensitive=False)

    listen: str = Field("127.0.0.1:9212", description="address the stations connect to, host:port")
    web: str = Field("127.0.0.1:6067", description="address of the gateway's /metrics and /health, host:port")
    max_connections: int = Field(10_000, ge=1, le=1_000_000, description="open station connections at most")
    max_frame_bytes: int = Field(
        1024, ge=256, le=9999, description="largest data segment accepted (HJ 212-2017: 1024)"
    )
    idle_timeout_seconds: float = Field(
        900.0, gt=0, le=86_400, description="a connection that sends nothing this long is closed"
    )
    max_inflight: int = Field(
        64, ge=1, le=10_000, description="frames of one connection awaiting Kafka before its reads pause"
    )
    max_pending: int = Field(
        100_000,
        ge=100,
        le=10_000_000,
        description="frames of all connections awaiting Kafka before all reads pause",
    )
    max_refusals: int = Field(
        32,
        ge=1,
        le=100_000,
        description="refused frames in a row (no good one between) before the connection is closed",
    )
    max_junk_bytes: int = Field(
        65_536,
        ge=1024,
        le=16_777_216,
        description="bytes that are no frame, in a row, before the connection is closed",
    )
    dlq_copy_bytes: int = Field(
        2048, ge=64, le=16_384, description="bytes of a refused frame copied into its dead letter"
    )
    crc: CrcMode = Field(
        "any", description="annex-a: only HJ 212 Annex A's CRC; any: CRC-16/MODBUS accepted too (counted)"
    )
    time_label: TimeLabel = Field(
        "start",
        description="whether DataTime of minute and hour data labels the start or the end of its interval",
    )
    minute_interval_seconds: int = Field(600, ge=60, le=3600, description="interval of minute data (CN 2051)")
    rtd_interval_seconds: int = Field(30, ge=1, le=3600, description="interval of real-time data (CN 2011)")
    units: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="units other than the defaults, code=unit,... (ug/m3, mg/m3, ppb, ppm)",
    )
    reading_cns: Annotated[tuple[str, ...], NoDecode] = Field(
        ("2051",), description="data commands that become readings: 2011, 2051, 2061 (comma-separated)"
    )
    split_mode: Literal["merge", "each"] = Field(
        "merge", description="merge: split packets are one message; each: every packet stands alone"
    )
    max_split_packets: int = Field(16, ge=1, le=9999, description="PNUM at most")
    split_timeout_seconds: float = Field(
        60.0, gt=0, le=3600, description="an incomplete split message waits this long for its next packet"
    )
    profile_file: Path | None = Field(None, description="TOML file of per-station profiles")
    kafka_timeout_seconds: float = Field(
        30.0,
        ge=1,
        le=600,
        description="how long Kafka may take to acknowledge a reading before it is given up",
    )
    shutdown_grace_seconds: float = Field(
        10.0,
        ge=0,
        le=300,
        description="on SIGTERM, how long to wait for readings in flight to be acknowledged",
    )

    @field_validator("listen", "web")
    @classmethod
    def _addr(cls, value: str) -> str:
        return _address(value)

    @field_validator("units", mode="before")
    @classmethod
    def _units_before(cls, value: Any) -> Any:
        return _units(value)

    @field_validator("reading_cns", mode="before")
    @classmethod
    def _cns_before(cls, value: Any) -> Any:
        return _cns(value)

    @field_validator("profile_file")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file {value} does not exist")
        return value

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def web_host(self) -> str:
        return self.web.rpartition(":")[0].strip("[]")

    @property
    def web_port(self) -> int:
        return int(self.web.rpartition(":")[2])


def load_gateway_settings(**overrides: Any) -> GatewaySettings:
    """Read and validate once; raise :class:`SettingsError` naming each bad (or unknown) variable."""
    known = {PREFIX + name.upper() for name in GatewaySettings.model_fields}
    unknown = sorted(k for k in os.environ if k.upper().startswith(PREFIX) and k.upper() not in known)
    if unknown:
        raise SettingsError(f"invalid setting: {unknown[0]}: no such gateway setting (see docs/gateway.md)")
    try:
        return GatewaySettings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "settings"
            given = err.get("input")
            shown = "" if isinstance(given, dict) else f" (got {given!r})"
            problems.append(f"{PREFIX}{name.upper()}: {err['msg'].removeprefix('Value error, ')}{shown}")
        raise SettingsError("invalid setting: " + "; ".join(problems)) from None


class ProfileSpec(BaseModel):
    """One profile of the profiles file: what differs from the AIRGRID_GATEWAY_* defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str | None = None
    time_label: TimeLabel | None = None
    minute_interval_seconds: int | None = Field(None, ge=60, le=3600)
    rtd_interval_seconds: int | None = Field(None, ge=1, le=3600)
    units: dict[str, str] = Field(default_factory=dict)
    reading_cns: tuple[str, ...] | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return _zone(value)

    @field_validator("units", mode="before")
    @classmethod
    def _units_before(cls, value: Any) -> Any:
        return _units(value)

    @field_validator("reading_cns", mode="before")
    @classmethod
    def _cns_before(cls, value: Any) -> Any:
        return _cns(value)


class ProfilesFile(BaseModel):
    """``[profiles.NAME]`` tables and a ``[stations]`` table of station id = profile name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profiles: dict[str, ProfileSpec] = Field(default_factory=dict)
    stations: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names(self) -> ProfilesFile:
        unknown = sorted({p for p in self.stations.values() if p not in self.profiles})
        if unknown:
            raise ValueError(f"stations name profiles that are not defined: {', '.join(unknown)}")
        return self


class Profiles:
    """The profile of each station: defaults from the settings, overridden per station."""

    def __init__(self, default: Profile, by_station: Mapping[str, Profile]) -> None:
        self.default = default
        self.by_station = dict(by_station)

    def of(self, station_id: str) -> Profile:
        return self.by_station.get(station_id, self.default)


def build_profiles(gs: GatewaySettings, zone: str, stations: set[str]) -> Profiles:
    """Profiles from the settings and the profiles file; SettingsError naming what is wrong."""
    units = {**DEFAULT_UNITS, **gs.units}
    default = Profile(
        zone=ZoneInfo(zone),
        time_label=gs.time_label,
        minute_interval_s=gs.minute_interval_seconds,
        rtd_interval_s=gs.rtd_interval_seconds,
        units=units,
        reading_cns=frozenset(gs.reading_cns),
    )
    if gs.profile_file is None:
        return Profiles(default, {})
    path = gs.profile_file
    try:
        doc = ProfilesFile.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"{PREFIX}PROFILE_FILE: cannot read {path}: {exc}") from None
    except ValidationError as exc:
        where = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()[:5]
        )
        raise SettingsError(f"{PREFIX}PROFILE_FILE: {path}: {where}") from None
    strangers = sorted(set(doc.stations) - stations)
    if strangers:
        raise SettingsError(
            f"{PREFIX}PROFILE_FILE: {path}: stations not in the grid directory: {', '.join(strangers[:10])}"
        )
    made: dict[str, Profile] = {}
    for name, spec in doc.profiles.items():
        made[name] = Profile(
            zone=ZoneInfo(spec.timezone) if spec.timezone else default.zone,
            time_label=spec.time_label or default.time_label,
            minute_interval_s=spec.minute_interval_seconds or default.minute_interval_s,
            rtd_interval_s=spec.rtd_interval_seconds or default.rtd_interval_s,
            units={**units, **spec.units},
            reading_cns=frozenset(spec.reading_cns) if spec.reading_cns else default.reading_cns,
        )
    return Profiles(default, {sid: made[name] for sid, name in doc.stations.items()})
