"""What the commands share: settings, logging, the async runner, the projection engine, times."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airgrid.cli.base import BAD_INPUT, UNREACHABLE, OpsError
from airgrid.config.settings import Settings, SettingsError, load_settings
from airgrid.models.codecs import first_line

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["first_line"]  # re-exported for the commands
log = logging.getLogger(__name__)


def settings() -> Settings:
    """The settings, or the one-line error that names the bad one (exit 2)."""
    try:
        return load_settings()
    except SettingsError as exc:
        raise OpsError(str(exc), BAD_INPUT) from None


def setup_logging(s: Settings) -> None:
    """Log lines of airgrid's own commands (not the worker's: it takes ``-l``). The Kafka
    client's own lines never reach a person at a terminal: what it means is said in one line."""
    from airgrid.cli.broker import quiet_kafka_logs

    logging.basicConfig(level=s.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    quiet_kafka_logs()
    if s.log_level != "DEBUG":  # Alembic's "Running upgrade ..." steps: the command says the result
        logging.getLogger("alembic").setLevel(logging.WARNING)


def run_async(main: Callable[[Settings], Coroutine[Any, Any, int | None]]) -> int:
    """Load the settings, set up logging and run ``main(settings)``; its exit code (0 for None).
    Kafka errors become one line naming the broker; Ctrl-C is 130."""
    from aiokafka.errors import KafkaError

    from airgrid.domain.directory import DirectoryError

    s = settings()
    setup_logging(s)
    try:
        result = asyncio.run(main(s))
    except (OpsError, BrokenPipeError):
        raise
    except DirectoryError as exc:
        raise OpsError(str(exc), BAD_INPUT) from None
    except KafkaError as exc:
        raise OpsError(f"Kafka at {s.broker} (AIRGRID_BROKER): {describe(exc)}", UNREACHABLE) from None
    except Exception as exc:
        log.debug("command failed", exc_info=True)  # AIRGRID_LOG_LEVEL=DEBUG shows the traceback
        raise OpsError(describe(exc), UNREACHABLE) from None
    return 0 if result is None else result


def describe(exc: BaseException) -> str:
    """``Type: first line``, once (aiokafka's messages already start with their type)."""
    name = type(exc).__name__
    return f"{name}: {first_line(exc).removeprefix(f'{name}: ')}"


def shown_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def projection_engine(s: Settings, must_exist: bool = True) -> Engine:
    """The projection engine, checked: a database that cannot be reached is exit 1."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

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
