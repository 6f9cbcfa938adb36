"""Heavy-pollution warnings: every worker reads the whole ``warnings`` topic into a board.

The ``warnings`` topic is tiny and every station partition needs it, so each worker reads all its
partitions from the beginning with a group-less consumer (a broadcast, not a consumer group that
would give each worker only some cities). The board is ``rt.tables["warnings"]``; the level in
force for a city is ``warning_level(rt, city)``, and over a station ``station_level(rt, station)``:
the strictest of its city's, its level-1 grid's and its level-2 grid's (a warning keyed by a grid
id covers a district or a street). Ingest picks the rule profile of that level for every
reading, so a new warning switches rules without a restart; the task owner passes the same level
to the escalation policy (``PolicyBook.choose(..., warning=...)``). Alarm events carry the level
their rules ran under (``AlarmEvent.warning_level``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

import orjson
from pydantic import ValidationError

from airgrid.domain.detection.warnings import WarningBoard
from airgrid.kafka.topics import kafka_client_options
from airgrid.models.warnings import PollutionWarning, WarningLevel
from airgrid.worker.app import AirgridApp, Runtime

log = logging.getLogger(__name__)


def board_of(rt: Runtime) -> WarningBoard:
    board = rt.tables.get("warnings")
    if not isinstance(board, WarningBoard):
        board = rt.tables["warnings"] = WarningBoard()
    return board


def warning_level(rt: Runtime, city: str, now: datetime | None = None) -> WarningLevel:
    """The heavy-pollution warning level in force for ``city`` (``"none"`` if none)."""
    return board_of(rt).level(city, now or rt.clock())


def areas_of(rt: Runtime, station_id: str) -> tuple[str, ...]:
    """Where a station's warning may come from: its city, its level-1 and its level-2 grid."""
    lineage = rt.directory.lineage(station_id)
    city = rt.directory.city
    return (city,) if lineage is None else (city, lineage.l1, lineage.l2)


def station_level(rt: Runtime, station_id: str, now: datetime | None = None) -> WarningLevel:
    """The strictest warning level in force over a station (city, district or street)."""
    return board_of(rt).strictest(areas_of(rt, station_id), now or rt.clock())


def apply_raw(board: WarningBoard, raw: bytes | None) -> PollutionWarning | None:
    """Parse one message of the topic and apply it; a bad message is logged and skipped (the
    topic is written by a trusted authority tool; there is no DLQ for it)."""
    try:
        warning = PollutionWarning.model_validate(orjson.loads(raw or b""))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        log.warning("ignored a malformed warning: %s", str(exc).splitlines()[0])
        return None
    if board.apply(warning):
        log.info("warning level %s in force for %s", warning.level, warning.city)
    return warning


async def follow(rt: Runtime, board: WarningBoard) -> None:
    """Read the warnings topic from the beginning, forever."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        rt.names.warnings,
        group_id=None,  # broadcast: every worker gets every partition
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        metadata_max_age_ms=5000,
        **kafka_client_options(rt.settings),
    )
    await consumer.start()
    try:
        async for msg in consumer:
            apply_raw(board, msg.value)
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()


def register(app: AirgridApp, rt: Runtime) -> None:
    board = board_of(rt)
    rt.warning_level = lambda station: station_level(rt, station)  # the hook the task owner calls

    @app.task  # type: ignore[misc]
    async def warnings_reader() -> None:
        while True:  # a broker hiccup must not leave the worker without warnings for good
            try:
                await follow(rt, board)
            except asyncio.CancelledError:
                raise
            except Exception:
                rt.metrics.internal_errors.labels("warnings").inc()
                log.exception("warnings reader failed; retrying in 5 s")
                await asyncio.sleep(5)
