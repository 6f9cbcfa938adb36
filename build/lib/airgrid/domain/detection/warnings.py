"""The heavy-pollution warning level in force per city or region: a small map, newest issue wins.

A region is a grid of the directory (a level-1 district or a level-2 street): a station is under
its city's warning and those of its level-1 and level-2 grids, and the strictest one applies."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from airgrid.domain.directory import Directory
from airgrid.models.warnings import PollutionWarning, WarningLevel

ORDER: dict[str, int] = {"none": 0, "blue": 1, "yellow": 2, "orange": 3, "red": 4}


class WarningBoard:
    """Per-worker view of the ``warnings`` topic. Every worker reads the whole topic (it is tiny
    and every station partition needs it), so the level is the same on every worker."""

    def __init__(self) -> None:
        self._by_city: dict[str, PollutionWarning] = {}

    def apply(self, warning: PollutionWarning) -> bool:
        """Take a warning unless an equal or newer one is in force; True if it changed."""
        current = self._by_city.get(warning.city)
        if current is not None and current.issued_at > warning.issued_at:
            return False
        self._by_city[warning.city] = warning
        return current != warning

    def level(self, city: str, now: datetime) -> WarningLevel:
        """The level in force for ``city`` at ``now`` ("none" when absent or lapsed)."""
        warning = self._by_city.get(city)
        if warning is None or (warning.valid_until is not None and now >= warning.valid_until):
            return "none"
        return warning.level

    def strictest(self, areas: tuple[str, ...], now: datetime) -> WarningLevel:
        """The strictest level in force for any of ``areas`` (a city and the regions within it)."""
        best: WarningLevel = "none"
        if self._by_city:  # the common case, no warning at all, costs nothing
            for area in areas:
                level = self.level(area, now)
                if ORDER[level] > ORDER[best]:
                    best = level
        return best

    def snapshot(self, now: datetime) -> dict[str, WarningLevel]:
        return {city: self.level(city, now) for city in self._by_city}


class StationWarnings:
    """The warning level in force over each station: the strictest of its city's, its level-1
    grid's and its level-2 grid's (a warning keyed by a grid id covers a district or a street)."""

    def __init__(self, board: WarningBoard, directory: Directory, clock: Callable[[], datetime]) -> None:
        self.board = board
        self.directory = directory
        self.clock = clock

    def areas_of(self, station_id: str) -> tuple[str, ...]:
        """Where a station's warning may come from: its city, its level-1 and its level-2 grid."""
        lineage = self.directory.lineage(station_id)
        city = self.directory.city
        return (city,) if lineage is None else (city, lineage.l1, lineage.l2)

    def level(self, station_id: str, now: datetime | None = None) -> WarningLevel:
        return self.board.strictest(self.areas_of(station_id), now or self.clock())

    def city_level(self, city: str, now: datetime | None = None) -> WarningLevel:
        return self.board.level(city, now or self.clock())
