"""What every operator command shares: settings, the projection engine, one-line errors."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url

from airgrid.config.settings import Settings, SettingsError, load_settings
from airgrid.models.codecs import first_line

__all__ = ["first_line"]  # re-exported for the commands

BAD_INPUT = 2
UNREACHABLE = 1


class OpsError(Exception):
    """A one-line problem for the operator, with the exit code it deserves."""

    def __init__(self, message: str, code: int = BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


def fail(exc: OpsError) -> int:
    print(f"airgrid: {exc}", file=sys.stderr)
    return exc.code


def settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise OpsError(str(exc), BAD_INPUT) from None


def shown_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def projection_engine(s: Settings, must_exist: bool = True) -> Engine:
    """The projection engine, checked: a database that cannot be reached is exit 1."""
    from airgrid.sinks.sql import make_engine

    url = s.sqlalchemy_url
    parsed = make_url(url)
    sqlite_file = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if must_exist and sqlite_file and not Path(sqlite_file).is_file():
        raise OpsError(
            f"no projection database at {sqlite_file} (run the worker, or set AIRGRID_DATABASE_URL)",
            UNREACHABLE,
        )
    try:
        engine = make_engine(url)
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:
        raise OpsError(
            f"cannot reach the projection database {shown_url(url)}: {first_line(exc)}", UNREACHABLE
        ) from None
    return engine


def parse_time(value: str, s: Settings, what: str) -> datetime:
    """ISO date or date-time; a naive one is read in the configured zone (settings.timezone)."""
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise OpsError(f"{what}: {value!r} is not an ISO date or date-time (e.g. 2026-11-16T08:00)") from None
    return t if t.tzinfo else t.replace(tzinfo=s.zone)
