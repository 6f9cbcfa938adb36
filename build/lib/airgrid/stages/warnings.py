"""Heavy-pollution warnings: every worker follows the whole ``warnings`` topic into a board.

The topic is tiny and every station partition needs it, so each worker reads all of it from the
beginning (a broadcast, kafka/follow.py, not a consumer group that would give each worker only some
cities). The level in force over a station is the strictest of its city's, its level-1 grid's and
its level-2 grid's (``StationWarnings``). Ingest picks the rule profile of that level for every
reading, so a new warning switches rules without a restart; the task owner passes the same level
to the escalation policy. Alarm events carry the level their rules ran under.
"""

from __future__ import annotations

import logging

import orjson
from pydantic import ValidationError

from airgrid.domain.detection.warnings import WarningBoard
from airgrid.models.codecs import first_line
from airgrid.models.warnings import PollutionWarning

log = logging.getLogger(__name__)


class WarningsFollower:
    """Applies each message of the ``warnings`` topic to the board."""

    def __init__(self, board: WarningBoard) -> None:
        self.board = board

    def handle(self, raw: bytes | None) -> PollutionWarning | None:
        """Apply one message; a bad one is logged and skipped (the topic is written by a trusted
        authority tool; there is no DLQ for it)."""
        try:
            warning = PollutionWarning.model_validate(orjson.loads(raw or b""))
        except (orjson.JSONDecodeError, ValidationError) as exc:
            log.warning("ignored a malformed warning: %s", first_line(exc))
            return None
        if self.board.apply(warning):
            log.info("warning level %s in force for %s", warning.level, warning.city)
        return warning
