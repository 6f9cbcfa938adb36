"""One settings class: ``AIRGRID_*`` environment over a TOML config file over the shipped defaults."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

PACKAGE_CONFIG_DIR = Path(__file__).resolve().parent
DATA_DIR = PACKAGE_CONFIG_DIR / "data"
DEFAULT_CONFIG_FILE = PACKAGE_CONFIG_DIR / "airgrid.toml"


class SettingsError(Exception):
    """A setting has a wrong value; the message names the setting and what is allowed."""


def _config_file() -> Path:
    # The one place where the environment chooses the config file; read at the entry point only.
    raw = os.environ.get("AIRGRID_CONFIG_FILE")
    return Path(raw) if raw else DEFAULT_CONFIG_FILE


class Settings(BaseSettings):
    """Every setting of airgrid. Env ``AIRGRID_<NAME>`` wins over the config file."""

    model_config = SettingsConfigDict(
        env_prefix="AIRGRID_",
        frozen=True,
        extra="forbid",
        case_sensitive=False,
    )

    # --- Kafka -------------------------------------------------------------------------------
    broker: str = Field(
        "kafka://127.0.0.1:9092",
        description="Kafka bootstrap servers, kafka://host:port[;host:port]",
    )
    broker_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol"
    )
    broker_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism when the protocol uses SASL"
    )
    broker_username: str | None = Field(None, description="SASL user name")
    broker_password: SecretStr | None = Field(None, description="SASL password (never logged)")
    broker_cafile: Path | None = Field(None, description="CA certificate for TLS")
    app_id: str = Field(
        "airgrid",
        pattern=r"^[A-Za-z0-9_.-]{1,100}$",
        description="Faust app id: consumer group and table-topic prefix",
    )
    topic_prefix: str = Field(
        "", pattern=r"^[A-Za-z0-9_.-]{0,100}$", description="prefix of every topic name"
    )
    session_timeout_seconds: float = Field(
        20.0,
        ge=6,
        le=300,
        description="consumer-group session timeout: how soon the partitions of a killed worker "
        "move to a live one (or to it, restarted)",
    )
    broker_connect_timeout_seconds: float = Field(
        15.0,
        gt=0,
        le=600,
        description="how long a command (topics, watch, feedback send, replay, simulate) waits for "
        "a broker that does not answer before it gives up with exit 1",
    )
    topic_partitions: int = Field(4, ge=1, le=1024, description="partitions of every airgrid topic")
    topic_replication: int = Field(1, ge=1, le=16, description="replication factor of topics")
    topic_min_insync_replicas: int | None = Field(
        None,
        ge=1,
        le=16,
        description="min.insync.replicas of airgrid's topics: replicas that must hold a write before "
        "Kafka acknowledges it (producers use acks=all); default 2 with a replication factor of 3 or "
        "more, else 1",
    )
    store: Literal["memory", "rocksdb"] = Field(
        "rocksdb", description="table store: rocksdb (rocksdict) recovers fast; memory replays"
    )
    data_dir: Path = Field(Path("var/airgrid"), description="worker state: tables, SQLite file")

    # --- Web / metrics -----------------------------------------------------------------------
    web_host: str = Field("127.0.0.1", description="address of the worker's HTTP server")
    web_port: int = Field(6066, ge=1, le=65535, description="port of /metrics and /health")

    # --- Sinks -------------------------------------------------------------------------------
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the projection; default sqlite in data_dir"
    )
    projection_enabled: bool = Field(True, description="run the SQL projection in this worker")
    supervision_enabled: bool = Field(
        True, description="create the scheduled supervision tasks of the policy's [supervision]"
    )
    projection_batch: int = Field(500, ge=1, le=100_000, description="max events per SQL write")
    projection_within_seconds: float = Field(
        0.2, gt=0, le=60, description="max wait to fill a projection batch"
    )
    projection_statement_timeout_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="a projection write that takes longer (a stuck database) fails and is retried",
    )

    # --- Domain data -------------------------------------------------------------------------
    grid_file: Path = Field(DATA_DIR / "grids.json", description="grid directory (JSON)")
    rules_file: Path = Field(DATA_DIR / "rules.toml", description="alarm rule catalogue (TOML)")
    policy_file: Path = Field(DATA_DIR / "policy.toml", description="escalation policy (TOML)")
    timezone: str = Field("Asia/Shanghai", description="IANA zone for local days and reports")

    consumer_fetch_min_bytes: int = Field(
        1,
        ge=1,
        le=52_428_800,
        description="the broker answers the worker's fetch once it has this many bytes (or after "
        "AIRGRID_CONSUMER_FETCH_MAX_WAIT_MS). 1 (Kafka's and Faust's default) answers at once; with "
        "readings trickling in, each fetch then brings a few records. Measured near the latency knee "
        "(2 pairs, 2-core machine): 65536 with 20 ms kept p99 reading -> task event at 290-450 ms where "
        "1 byte gave 2.9-3.7 s",
    )
    consumer_fetch_max_wait_ms: int = Field(
        1500,
        ge=1,
        le=30_000,
        description="the longest the broker holds the worker's fetch waiting for "
        "AIRGRID_CONSUMER_FETCH_MIN_BYTES (1500: Faust's value); each pipeline hop may wait this long",
    )
    producer_linger_seconds: float = Field(
        0.0,
        ge=0,
        le=1,
        description="how long the producer waits to fill a batch; waits for acknowledgements send "
        "at once regardless (measured in drains: 5 ms x0.95-1.37 on a loaded machine, x1.02-1.03 on a "
        "quiet one, 20 ms x1.10; at equal load 5 ms was worse: reading -> task event p99 344 ms against "
        "106 ms at 600 readings/s, behind at 1,200/s; so 0 stays the default)",
    )

    # --- Behaviour ---------------------------------------------------------------------------
    sweep_interval_seconds: float = Field(
        1.0, gt=0, le=3600, description="how often the deadline sweeper looks at open tasks"
    )
    supervision_interval_seconds: float = Field(
        30.0, gt=0, le=3600, description="how often the supervision scheduler looks for tasks the grids owe"
    )
    co_notify_radius_km: float = Field(
        0.0,
        ge=0,
        le=100,
        description="also notify level-3 grids whose centre lies within this distance of the "
        "station (0: off)",
    )
    upwind_radius_km: float = Field(
        5.0,
        ge=0,
        le=100,
        description="also notify the level-3 grids upwind of the station (by the alarm's wind) whose "
        "centre lies within this distance, listed first in co_notified and in upwind of the "
        "dispatched event (0: off). 5 km: about 7 grids of the sample city in a 60-degree sector",
    )
    upwind_sector_degrees: float = Field(
        60.0,
        gt=0,
        le=360,
        description="width of the upwind sector, centred on the direction the wind comes from",
    )
    upwind_min_wind_speed: float = Field(
        0.5,
        ge=0,
        le=100,
        description="a slower wind (m/s) is calm: its direction means little, no grid is upwind",
    )
    checkpoint_interval_seconds: float = Field(
        5.0,
        gt=0,
        le=60,
        description="ingest keeps station states in memory and writes the changed ones at most this "
        "long after the first reading since the last checkpoint (sooner when the input runs dry); a "
        "kill replays the readings since then. Measured, 40,000 readings of 2,000 stations: 1 s wrote "
        "0.66 rows per reading, 5 s 0.40 and drained x1.4 faster",
    )
    checkpoint_max_readings: int = Field(
        50_000,
        ge=1,
        le=1_000_000,
        description="ingest checkpoints after at most this many readings (a bound on the replay after a "
        "kill while a backlog drains; the interval decides otherwise). Measured, 100,000 readings of "
        "2,000 stations: 5,000 wrote 0.4 rows per reading; 50,000 about 0.08 and drained x1.3-1.6 faster",
    )
    state_cache_stations: int = Field(
        10_000,
        ge=100,
        description="station states ingest keeps parsed in memory, about 3.5 KiB each (those not "
        "changed since the last checkpoint go first; a state not in it is read from the table)",
    )
    internal_retry_seconds: float = Field(
        120.0,
        gt=0,
        le=86400,
        description="a message that fails for a reason not its own (a table not ready, a broker "
        "error) is retried this long; then the worker stops (exit 1) with it uncommitted, so a "
        "restart reads it again. Never dead-lettered",
    )
    max_future_skew_seconds: int = Field(
        300, ge=0, description="readings observed further in the future are rejected"
    )
    max_reading_age_days: int = Field(
        400, ge=1, description="readings observed longer ago than this are rejected"
    )
    max_message_bytes: int = Field(
        65536, ge=256, description="larger readings/feedback are rejected unparsed"
    )
    late_grace_seconds: int = Field(
        900,
        ge=0,
        le=86400,
        description="a late reading whose hour ended at most this long before the station's newest "
        "reading is folded into that hour and the hour re-evaluated; later ones go to the DLQ (too_late)",
    )
    aqi_standard: Literal["auto", "hj633-2012", "hj633-2026", "epa-2024"] = Field(
        "auto",
        description="AQI standard of alarms and AQI rules; auto: HJ 633-2012, or HJ 633-2026 from "
        "2026-03-01 (China date of the reading)",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="log level of airgrid's own commands (the worker: `-l`)"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_config_file())
        return (init_settings, env_settings, toml)

    @field_validator("broker")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        if not value.startswith("kafka://"):
            raise ValueError("must start with kafka:// (e.g. kafka://127.0.0.1:9092)")
        for server in value.removeprefix("kafka://").split(";"):
            host, _, port = server.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{server!r} is not host:port")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            make_url(value).get_dialect()  # the dialect's module only, not its driver
        except (ArgumentError, NoSuchModuleError, ValueError) as exc:
            raise ValueError(
                f"not a SQLAlchemy database URL ({exc}); e.g. sqlite:////var/lib/airgrid/airgrid.db "
                "or postgresql+psycopg://user:password@host:5432/airgrid"
            ) from None
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @field_validator("grid_file", "rules_file", "policy_file")
    @classmethod
    def _exists(cls, value: Path) -> Path:
        if not value.is_file():
            raise ValueError(f"file {value} does not exist")
        return value

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> Settings:
        if "SASL" in self.broker_security_protocol and not (self.broker_username and self.broker_password):
            raise ValueError(
                "broker_security_protocol uses SASL: set AIRGRID_BROKER_USERNAME and AIRGRID_BROKER_PASSWORD"
            )
        return self

    @model_validator(mode="after")
    def _min_isr_within_replication(self) -> Settings:
        if (
            self.topic_min_insync_replicas is not None
            and self.topic_min_insync_replicas > self.topic_replication
        ):
            raise ValueError(
                f"AIRGRID_TOPIC_MIN_INSYNC_REPLICAS ({self.topic_min_insync_replicas}) exceeds "
                f"AIRGRID_TOPIC_REPLICATION ({self.topic_replication}): Kafka would refuse every write; "
                "set it at most the replication factor (2 of 3 is usual)"
            )
        return self

    # --- Derived -----------------------------------------------------------------------------
    @property
    def min_insync_replicas(self) -> int:
        """``topic_min_insync_replicas``, or 2 of a replication factor of 3 or more, else 1: one
        broker may fail without stopping writes, and an acknowledged write is on two brokers."""
        if self.topic_min_insync_replicas is not None:
            return self.topic_min_insync_replicas
        return 2 if self.topic_replication >= 3 else 1

    @property
    def bootstrap_servers(self) -> str:
        return self.broker.removeprefix("kafka://").replace(";", ",")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'airgrid.db').resolve()}"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


def load_settings(**overrides: Any) -> Settings:
    """Read and validate settings once; raise :class:`SettingsError` naming each bad setting where
    it was given: the ``AIRGRID_*`` variable, or the key in the config file."""
    path = _config_file()
    if not path.is_file():
        raise SettingsError(f"AIRGRID_CONFIG_FILE: {path} does not exist or is not a file")
    try:
        in_file = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"AIRGRID_CONFIG_FILE: {path} is not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"AIRGRID_CONFIG_FILE: cannot read {path}: {exc}") from None
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"])
            given = err.get("input")
            secret = name in SECRET_SETTINGS or isinstance(given, dict)
            shown = "" if secret else f" (got {given!r})"
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{_source(name, overrides, in_file, path)}: {msg}{shown}")
        raise SettingsError("invalid setting: " + "; ".join(problems)) from None
    except OSError as exc:  # unreadable config file
        raise SettingsError(f"AIRGRID_CONFIG_FILE: cannot read {exc.filename}: {exc.strerror}") from None


SECRET_SETTINGS = frozenset({"broker_password", "database_url"})  # never echoed in an error


def _source(name: str, overrides: dict[str, Any], in_file: dict[str, Any], path: Path) -> str:
    """Where the value of setting ``name`` came from, as the person who gave it wrote it; the
    sources in Settings' order (arguments, environment, config file)."""
    if not name:
        return "settings"
    if name in overrides:
        return name
    env = f"AIRGRID_{name.upper()}"
    if any(k.upper() == env for k in os.environ):
        return env
    if name.lower() in {str(k).lower() for k in in_file}:
        return f"{name} in {path} (AIRGRID_CONFIG_FILE)"
    return env
