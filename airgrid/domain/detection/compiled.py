"""A rule catalogue compiled for one warning level: flat slot objects the hot path reads fast."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any, Literal

from airgrid.domain.aqi import CHINA_TZ, HJ633_2026_FROM
from airgrid.domain.rules import (
    WARNING_LEVELS,
    AqiRule,
    ExceedanceRule,
    FlatlineRule,
    ImpossibleRule,
    LocalExcessRule,
    RiseRule,
    RuleCatalogue,
    SilentRule,
    SustainedRule,
    WarningLevel,
)
from airgrid.models.alarms import AlarmRoute
from airgrid.models.common import POLLUTANTS, Severity

AqiChoice = Literal["auto", "hj633-2012", "hj633-2026", "epa-2024"]
# GB 3095-2026 and HJ 633-2026 replace the 2012 versions on the same day (aqi.HJ633_2026_FROM);
# GB 3095-2026's final limits replace its transitional ones on 2031-01-01; both China dates.
CUTOVER_TS = datetime.combine(HJ633_2026_FROM, time(), tzinfo=CHINA_TZ).timestamp()
FINAL_TS = datetime(2031, 1, 1, tzinfo=CHINA_TZ).timestamp()
GB3095_VERSIONS = ("gb3095-2012", "gb3095-2026", "gb3095-2026-final")


def gb3095_index(hour_ts: float) -> int:
    """Index into ``Rule.thr``/``Rule.clr`` of the GB 3095 limits in force at ``hour_ts``."""
    return 0 if hour_ts < CUTOVER_TS else 1 if hour_ts < FINAL_TS else 2


@dataclass(slots=True, eq=False)
class Rule:
    """One rule with every threshold resolved, one per GB 3095 version (``gb3095_index``): 2012
    before 2026-03-01, 2026 transitional, 2026 final from 2031-01-01 (equal unless the rule uses
    the GB 3095 limit)."""

    id: str
    kind: str
    severity: Severity
    route: AlarmRoute
    clear_hours: int
    description: str = ""
    period: str = "1h"
    pollutant: str = ""  # "" for rules over several pollutants (AQI, silence, data quality)
    thr: tuple[float, ...] = (0.0, 0.0, 0.0)
    clr: tuple[float, ...] = (0.0, 0.0, 0.0)
    hours: int = 0
    min_level: int = 0
    factor: float = 0.0
    min_rise: float = 0.0
    baseline_hours: int = 0
    min_baseline: int = 0
    clear_factor: float = 0.0
    after_s: int = 0
    arrival_s: int = 0
    readings: int = 0
    pollutants: tuple[str, ...] = ()
    min_value: float = 0.0
    ratio: float = 1.0
    abs_tol: float = 0.0
    ranges: dict[str, float] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # episode keys of the per-pollutant rules, built once (no string work per reading)
        self.keys = {p: f"{self.id}:{p}" for p in POLLUTANTS}

    def threshold(self, hour_ts: float) -> float:
        return self.thr[gb3095_index(hour_ts)]

    def clear_below(self, hour_ts: float) -> float:
        return self.clr[gb3095_index(hour_ts)]


@dataclass(frozen=True)
class RuleSet:
    """What the engine needs: the rules by where they are evaluated, and the engine settings."""

    level: WarningLevel
    hourly: tuple[Rule, ...]  # evaluated when an hour closes
    daily: tuple[Rule, ...]  # evaluated when a China calendar day completes
    per_reading: tuple[Rule, ...]  # flatline, impossible
    silent: tuple[Rule, ...]
    min_coverage_s: float
    min_day_hours: int
    min_o3_8h_hours: int
    grace_s: float
    aqi_standard: AqiChoice
    version: str
    # no `impossible` rule: the engine still keeps negative values out of the averages
    screens_negative: bool = False
    # `updated` only on a material change (see episodes.Emitter): a new worst value above
    # worse_factor x the worst one sent, ...; else one heartbeat per heartbeat_s of event time (0: none)
    worse_factor: float = 2.0
    heartbeat_s: float = 86400.0
    # local_excess: evaluated by the region stage against the regional background
    # (domain/regional.py), never by the station engine; min_rise = above_abs, factor = above_ratio
    regional: tuple[Rule, ...] = ()


def _thresholds(cat: RuleCatalogue, rule: ExceedanceRule | SustainedRule, scale: float) -> dict[str, Any]:
    if rule.limit == "gb3095":
        versions: tuple[str, ...] = GB3095_VERSIONS
        if cat.gb3095 != "auto":
            versions = (cat.gb3095,) * len(GB3095_VERSIONS)
        thr = tuple(cat.limit(v, rule.pollutant, rule.period) * scale for v in versions)  # type: ignore[arg-type]
    else:
        assert rule.threshold is not None
        thr = (rule.threshold * scale,) * len(GB3095_VERSIONS)
    if rule.clear_below is not None:
        clr = tuple(min(rule.clear_below * scale, t) for t in thr)
    else:
        clr = tuple(t * rule.clear_ratio for t in thr)
    return {"thr": thr, "clr": clr}


def compile_rules(
    cat: RuleCatalogue,
    level: WarningLevel = "none",
    *,
    grace_s: float = 0.0,
    aqi_standard: AqiChoice = "auto",
) -> RuleSet:
    """Resolve the profile of ``level`` (threshold scale, AQI level shift, per-rule overrides)."""
    profile = cat.profiles.get(level)
    scale = profile.threshold_scale if profile else 1.0
    shift = profile.aqi_level_shift if profile else 0
    hourly: list[Rule] = []
    daily: list[Rule] = []
    per_reading: list[Rule] = []
    silent: list[Rule] = []
    regional: list[Rule] = []
    for base in cat.rules:
        if base.levels and level not in base.levels:
            continue
        src = base
        if profile and base.id in profile.overrides:
            src = type(base).model_validate(base.model_dump() | profile.overrides[base.id])
        common: dict[str, Any] = {
            "id": src.id,
            "kind": src.kind,
            "severity": src.severity,
            "route": src.route,
            "clear_hours": src.clear_hours,
            "description": src.description,
            "thr": (0.0, 0.0),
            "clr": (0.0, 0.0),
        }
        if isinstance(src, ExceedanceRule | SustainedRule):
            common |= _thresholds(cat, src, scale)
            common |= {"pollutant": src.pollutant, "period": src.period}
            if isinstance(src, SustainedRule):
                common["hours"] = src.hours
            (daily if src.period == "day" else hourly).append(Rule(**common))
        elif isinstance(src, AqiRule):
            common |= {"min_level": max(2, src.min_level - shift), "period": "1h"}
            hourly.append(Rule(**common))
        elif isinstance(src, RiseRule):
            common |= {
                "pollutant": src.pollutant,
                "period": "1h",
                "factor": src.factor,
                "min_rise": src.min_rise * scale,
                "baseline_hours": src.baseline_hours,
                "min_baseline": src.min_baseline_hours,
                "clear_factor": src.clear_factor,
            }
            hourly.append(Rule(**common))
        elif isinstance(src, SilentRule):
            arrival = src.arrival_s if src.arrival_s is not None else src.after_s
            silent.append(Rule(**common, after_s=src.after_s, arrival_s=arrival, period="silence"))
        elif isinstance(src, FlatlineRule):
            common |= {"readings": src.readings, "pollutants": src.pollutants, "min_value": src.min_value}
            per_reading.append(Rule(**common, period="reading"))
        elif isinstance(src, ImpossibleRule):
            common |= {
                "ratio": src.pm25_over_pm10_ratio,
                "abs_tol": src.pm25_over_pm10_abs,
                "ranges": dict(src.ranges),
                "readings": src.readings,
            }
            per_reading.append(Rule(**common, period="reading"))
        elif isinstance(src, LocalExcessRule):
            common |= {
                "pollutant": src.pollutant,
                "period": "1h",
                "min_rise": src.above_abs,
                "factor": src.above_ratio,
                "hours": src.hours,
            }
            regional.append(Rule(**common))
    rs = RuleSet(
        level=level,
        hourly=tuple(hourly),
        daily=tuple(daily),
        per_reading=tuple(per_reading),
        silent=tuple(silent),
        min_coverage_s=float(cat.min_coverage_s),
        min_day_hours=cat.min_day_hours,
        min_o3_8h_hours=cat.min_o3_8h_hours,
        grace_s=float(grace_s),
        aqi_standard=aqi_standard,
        version=cat.version,
        screens_negative=any(r.kind == "impossible" for r in per_reading),
        worse_factor=cat.updates.worse_factor,
        heartbeat_s=cat.updates.heartbeat_hours * 3600.0,
        regional=tuple(regional),
    )
    return rs


class RuleBook:
    """The catalogue compiled once per warning level, on first use (switching is a dict lookup)."""

    def __init__(self, cat: RuleCatalogue, *, grace_s: float = 0.0, aqi_standard: AqiChoice = "auto") -> None:
        self.catalogue = cat
        self._sets = {
            level: compile_rules(cat, level, grace_s=grace_s, aqi_standard=aqi_standard)
            for level in WARNING_LEVELS
        }

    def for_level(self, level: WarningLevel) -> RuleSet:
        return self._sets[level]

    @property
    def min_silence_s(self) -> float | None:
        """The shortest silence threshold of any level (how often the sweep must look)."""
        found = [min(r.after_s, r.arrival_s) for rs in self._sets.values() for r in rs.silent]
        return float(min(found)) if found else None
