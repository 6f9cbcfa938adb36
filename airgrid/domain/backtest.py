"""The agents' pure rule engine over historical hourly readings, no Kafka (``airgrid backtest``).

Input: the Beijing Multi-Site CSV format (``No, year, month, day, hour, PM2.5, PM10, SO2, NO2, CO,
O3, ..., station``), local time UTC+08:00, every concentration in µg/m³ (CO too: it is divided by
1000 into mg/m³ here). Missing values are ``NA``; a row with no value at all is no reading, so a
station that misses an hour is silent for that hour.

The hour label: by default (``--hour-label start``) the label H is taken as the START of the
averaged hour, H:00-H+1:00 local, so the rows 0..23 of a date form that China calendar day and the
reading's ``observed_at`` (the END of its interval) is H+1:00. ``--hour-label end`` reads H as the
end instead (China's real-time publication convention).

The same functions as the ingest agent run: ``engine.evaluate`` per reading, and
``engine.check_silence`` at each hour a station sends nothing, with the data's own time as the clock.
"""

from __future__ import annotations

import csv
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any, Protocol

from airgrid.domain.aqi import HOURLY_INDICATORS
from airgrid.domain.detection import engine
from airgrid.domain.detection.compiled import RuleSet
from airgrid.domain.detection.hour import HOUR, HourView
from airgrid.domain.detection.state import StationState
from airgrid.models.alarms import AlarmEvent
from airgrid.models.readings import Reading

CST = timezone(timedelta(hours=8))
COLUMNS = {"PM2.5": "pm25", "PM10": "pm10", "SO2": "so2", "NO2": "no2", "CO": "co", "O3": "o3"}
CSV_INDICATORS = (
    "pm25_1h",
    "pm25_24h",
    "pm10_1h",
    "pm10_24h",
    "so2_1h",
    "so2_24h",
    "no2_1h",
    "co_1h",
    "co_8h",  # US EPA only
    "o3_1h",
    "o3_8h",
)


class BacktestError(Exception):
    """A file that cannot be read as the expected CSV; the message names the file and line."""


@dataclass(frozen=True)
class Row:
    station: str
    end: datetime  # END of the averaged hour (observed_at)
    values: dict[str, float]


def read_rows(path: Path, label: str = "start") -> Iterator[Row]:
    """Rows of one CSV file, in file order."""
    shift = timedelta(hours=1) if label == "start" else timedelta(0)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"year", "month", "day", "hour", "station", *COLUMNS} - set(reader.fieldnames or ())
            if missing:
                raise BacktestError(
                    f"{path}: not a Beijing Multi-Site CSV (missing {', '.join(sorted(missing))})"
                )
            for n, rec in enumerate(reader, start=2):
                try:
                    start = datetime(int(rec["year"]), int(rec["month"]), int(rec["day"]), tzinfo=CST)
                    end = start + timedelta(hours=int(rec["hour"])) + shift
                    values = {}
                    for col, p in COLUMNS.items():
                        raw = rec[col]
                        if raw and raw != "NA":
                            v = float(raw)
                            values[p] = v / 1000 if p == "co" else v  # CO: µg/m³ in the file
                except (ValueError, TypeError) as exc:
                    raise BacktestError(f"{path}:{n}: {exc}") from None
                yield Row(rec["station"], end, values)
    except OSError as exc:
        raise BacktestError(f"{path}: {exc.strerror}") from None


@dataclass
class Tally:
    """Alarm figures of one station and month (China time)."""

    readings: int = 0
    opened_grid: int = 0
    opened_ops: int = 0
    events: int = 0
    rules: Counter[str] = field(default_factory=Counter)


class Observer(Protocol):
    """What ``run`` tells a second replay (``backtest --tasks``, domain/backtest_tasks.py)."""

    def station(
        self, now: float, station: str, events: list[AlarmEvent], closed: list[tuple[int, dict[str, float]]]
    ) -> None:
        """A station's alarm events and the hours it closed (engine ``closed``) at data time ``now``."""

    def hour(self, now: float) -> None:
        """Every station of the hour ending at ``now`` was evaluated."""


@dataclass
class Result:
    tallies: dict[tuple[str, str], Tally] = field(default_factory=lambda: defaultdict(Tally))
    by_rule: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    events: list[AlarmEvent] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)  # opened/updated/cleared
    changes: Counter[str] = field(default_factory=Counter)  # why each `updated` was sent
    still_open: set[str] = field(default_factory=set)  # alarm ids opened and not (yet) cleared

    def add(self, event: AlarmEvent) -> None:
        month = event.opened_at.astimezone(CST).strftime("%Y-%m")
        t = self.tallies[(event.station_id, month)]
        t.events += 1
        self.kinds[event.kind] += 1
        if event.kind == "updated":
            self.changes[event.change or "?"] += 1
        elif event.kind == "cleared":
            self.still_open.discard(event.alarm_id)
        if event.kind == "opened":
            self.still_open.add(event.alarm_id)
            self.by_rule[event.rule_id] += 1
            t.rules[event.rule_id] += 1
            if event.route == "grid":
                t.opened_grid += 1
            else:
                t.opened_ops += 1


def run(
    rows: Sequence[Row],
    rs: RuleSet,
    aqi_out: IO[str] | None = None,
    progress: IO[str] | None = None,
    keep_events: bool = False,
    observer: Observer | None = None,
) -> Result:
    """Replay rows (any order of stations; sorted by time here) through the engine; ``observer``
    also gets each station's events and closed hours, hour by hour."""
    result = Result()
    ordered = sorted(rows, key=lambda r: (r.end, r.station))
    stations = sorted({r.station for r in ordered})
    states = {s: StationState() for s in stations}
    writer = _aqi_writer(aqi_out)
    began = time.monotonic()
    total = len(ordered)
    i = 0
    while i < total:
        end = ordered[i].end
        hour_rows = {}
        while i < total and ordered[i].end == end:
            hour_rows[ordered[i].station] = ordered[i]
            i += 1
        now = end.timestamp()
        for station in stations:
            state = states[station]
            row = hour_rows.get(station)
            closed: list[tuple[int, dict[str, float]]] = []
            if row is None or not row.values:
                events = engine.check_silence(state, station, rs, now)
            else:
                # trusted, already-parsed numbers: skip validation (a third of the run time)
                reading = Reading.model_construct(
                    station_id=station,
                    observed_at=row.end,
                    interval_s=3600,
                    values=row.values,  # type: ignore[arg-type]
                    flags={},
                )
                state, events, outcome = engine.evaluate(
                    state, reading, rs, now, closed if observer is not None else None
                )
                result.outcomes[outcome] += 1
                month = (row.end - timedelta(hours=1)).astimezone(CST).strftime("%Y-%m")  # hour start
                result.tallies[(station, month)].readings += 1
                if writer is not None:
                    _write_aqi(writer, station, state, engine.hour_number(now), rs)
            for event in events:
                result.add(event)
            if keep_events:
                result.events += events
            if observer is not None:
                observer.station(now, station, events, closed)
        if observer is not None:
            observer.hour(now)
        if progress is not None and (i == total or i % 20000 < len(hour_rows)):
            rate = i / max(1e-9, time.monotonic() - began)
            print(
                f"\rbacktest: {i:,}/{total:,} readings ({100 * i // max(total, 1)} %), {rate:,.0f}/s",
                end="",
                file=progress,
                flush=True,
            )
    if progress is not None:
        print(file=progress)
    return result


def _aqi_writer(out: IO[str] | None) -> Any:
    if out is None:
        return None
    writer = csv.writer(out)
    writer.writerow(["station", "time", "aqi", "category", "primary", *(f"iaqi_{i}" for i in CSV_INDICATORS)])
    return writer


def _write_aqi(writer: Any, station: str, state: StationState, h: int, rs: RuleSet) -> None:
    view = HourView(state.ring, h, rs)
    result = view.aqi()
    start = datetime.fromtimestamp(h * HOUR, CST).isoformat()
    if result is None or result.aqi is None or result.category is None:
        iaqi = result.iaqi if result is not None else {}
        writer.writerow([station, start, "", "", "", *(iaqi.get(i, "") for i in CSV_INDICATORS)])
        return
    cat = result.category
    name = getattr(cat, "en", None) or getattr(cat, "name", "")
    writer.writerow(
        [
            station,
            start,
            result.aqi,
            name,
            " ".join(result.primary),
            *(result.iaqi.get(i, "") for i in CSV_INDICATORS),
        ]
    )


def render(result: Result, out: IO[str]) -> None:
    """Per station and month: readings, episodes opened (grid / operations), events, top rules."""
    head = f"{'station':<12} {'month':<8} {'readings':>8} {'grid':>5} {'ops':>5} {'events':>7}"
    print(head + "  top rules (episodes)", file=out)
    for (station, month), t in sorted(result.tallies.items()):
        top = ", ".join(f"{r} {n}" for r, n in t.rules.most_common(4))
        row = f"{station:<12} {month:<8} {t.readings:>8} {t.opened_grid:>5} {t.opened_ops:>5} {t.events:>7}"
        print(f"{row}  {top}", file=out)
    print("\nepisodes opened per rule:", file=out)
    for rule, n in sorted(result.by_rule.items(), key=lambda kv: -kv[1]):
        print(f"  {rule:<24} {n:>7}", file=out)
    print("reading outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(result.outcomes.items())), file=out)
    print(summary(result), file=out)


def summary(result: Result) -> str:
    """Alarm events per episode, why updates were sent, and episodes the data left open."""
    opened, total = result.kinds["opened"], sum(result.kinds.values())
    why = ", ".join(f"{k} {v:,}" for k, v in result.changes.most_common())
    per = f"{total / opened:.2f}" if opened else "-"
    return (
        f"alarm events: {total:,} for {opened:,} episodes ({per} per episode): "
        f"opened {opened:,}, updated {result.kinds['updated']:,}{f' ({why})' if why else ''}, "
        f"cleared {result.kinds['cleared']:,}; still open at the end of the data: {len(result.still_open):,}"
    )


__all__ = ["HOURLY_INDICATORS", "BacktestError", "Result", "Row", "read_rows", "render", "run", "summary"]
