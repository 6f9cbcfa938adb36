"""Report periods: ``2026-W47`` (ISO week), ``2026-11``, ``2026-Q4``, ``2026``, in local time."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

KINDS = {"weekly": "week", "monthly": "month", "quarterly": "quarter", "assessment": "year"}
EXAMPLES = {"week": "2026-W47", "month": "2026-11", "quarter": "2026-Q4", "year": "2026"}
PATTERNS = {
    "week": re.compile(r"^(\d{4})-W(\d{2})$"),
    "month": re.compile(r"^(\d{4})-(\d{2})$"),
    "quarter": re.compile(r"^(\d{4})-Q([1-4])$"),
    "year": re.compile(r"^(\d{4})$"),
}


class PeriodError(ValueError):
    """The period does not parse, or is not of the report's kind."""


@dataclass(frozen=True)
class Period:
    kind: str
    label: str
    first_day: date
    end_day: date  # exclusive
    zone: ZoneInfo

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first_day, time(), self.zone).astimezone(UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.end_day, time(), self.zone).astimezone(UTC)

    def contains(self, t: datetime | None) -> bool:
        return t is not None and self.start <= t < self.end

    def previous(self) -> Period:
        """The period of the same kind just before this one (what its change is measured against)."""
        last = self.first_day - timedelta(days=1)
        if self.kind == "week":
            first = self.first_day - timedelta(days=7)
            year, week, _ = first.isocalendar()
            label = f"{year}-W{week:02d}"
        elif self.kind == "month":
            first = last.replace(day=1)
            label = f"{first.year}-{first.month:02d}"
        elif self.kind == "quarter":
            first = last.replace(day=1, month=last.month - 2)
            label = f"{first.year}-Q{last.month // 3}"
        else:
            first = date(self.first_day.year - 1, 1, 1)
            label = str(first.year)
        return Period(self.kind, label, first, self.first_day, self.zone)


def parse_period(report: str, text: str, zone: ZoneInfo) -> Period:
    kind = KINDS[report]
    m = PATTERNS[kind].match(text.strip())
    if not m:
        raise PeriodError(f"--period {text!r} is not a {kind} for a {report} report (e.g. {EXAMPLES[kind]})")
    year = int(m.group(1))
    try:
        if kind == "week":
            first = date.fromisocalendar(year, int(m.group(2)), 1)
            end = first + timedelta(days=7)
        elif kind == "month":
            first = date(year, int(m.group(2)), 1)
            end = date(year + first.month // 12, first.month % 12 + 1, 1)
        elif kind == "quarter":
            q = int(m.group(2))
            first = date(year, 3 * q - 2, 1)
            end = date(year + q // 4, (3 * q) % 12 + 1, 1)
        else:
            first, end = date(year, 1, 1), date(year + 1, 1, 1)
    except ValueError as exc:
        raise PeriodError(f"--period {text!r}: {exc}") from None
    return Period(kind, text.strip(), first, end, zone)
