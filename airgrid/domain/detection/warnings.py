"""The heavy-pollution warning level in force per city: a small map, newest issue wins."""

from __future__ import annotations

from datetime import datetime

from airgrid.models.warnings import PollutionWarning, WarningLevel


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

    def snapshot(self, now: datetime) -> dict[str, WarningLevel]:
        return {city: self.level(city, now) for city in self._by_city}
