"""Validation of raw bytes into readings and feedback, with a reason a person can act on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from airgrid.models.feedback import Feedback
from airgrid.models.readings import Reading

if TYPE_CHECKING:
    from airgrid.config.settings import Settings

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Rejection:
    """Why a message was refused; ``code`` is bounded (a metric label)."""

    code: str
    reason: str


@dataclass(frozen=True)
class Limits:
    """What a reading may claim about time and size."""

    max_bytes: int
    max_future: timedelta
    max_age: timedelta

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        """The limits the settings give: the worker's, and the gateway's (it refuses what the
        worker would)."""
        return cls(
            max_bytes=settings.max_message_bytes,
            max_future=timedelta(seconds=settings.max_future_skew_seconds),
            max_age=timedelta(days=settings.max_reading_age_days),
        )


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "message"
        parts.append(f"{where}: {err['msg']}")
    more = f" (and {exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return "; ".join(parts) + more


def _decode(raw: bytes | None, model: type[M], max_bytes: int) -> M | Rejection:
    if raw is None or not raw:
        return Rejection("empty", "empty message (no value bytes)")
    if len(raw) > max_bytes:
        return Rejection("too_large", f"message of {len(raw)} bytes exceeds {max_bytes} bytes")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejection("not_json", f"not valid UTF-8 JSON: {exc}")
    if not isinstance(data, dict):
        return Rejection("not_object", f"expected a JSON object, got {type(data).__name__}")
    version = data.get("schema_version", 1)
    if type(version) is not int or version != 1:  # true and 1.0 are not the version 1
        return Rejection("schema_version", f"unsupported schema_version {version!r} (expected 1)")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return Rejection("invalid", _describe(exc))


def parse_reading(
    raw: bytes | None, now: datetime, limits: Limits, known_station: Callable[[str], bool]
) -> Reading | Rejection:
    """A valid reading of a known station in a plausible time, or the reason it is not."""
    result = _decode(raw, Reading, limits.max_bytes)
    if isinstance(result, Rejection):
        return result
    reading = result
    if reading.observed_at > now + limits.max_future:
        return Rejection(
            "future",
            f"observed_at {reading.observed_at.isoformat()} is more than "
            f"{int(limits.max_future.total_seconds())} s ahead of the clock ({now.isoformat()})",
        )
    if reading.observed_at < now - limits.max_age:
        return Rejection(
            "too_old",
            f"observed_at {reading.observed_at.isoformat()} is older than {limits.max_age.days} days",
        )
    if not known_station(reading.station_id):
        return Rejection("unknown_station", f"station {reading.station_id!r} is not in the grid directory")
    return reading


def parse_feedback(raw: bytes | None, max_bytes: int) -> Feedback | Rejection:
    """A structurally valid feedback event, or the reason it is not."""
    return _decode(raw, Feedback, max_bytes)
