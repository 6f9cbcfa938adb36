"""The alarm rule catalogue as data (a TOML file), validated at start, compiled per warning level.

Rule kinds: ``exceedance`` (one averaging period above a limit), ``sustained`` (N consecutive hours
above), ``aqi_category`` (AQI category at or above a level), ``sudden_rise`` (against the
station's own baseline) and the data-quality kinds ``silent``, ``flatline`` and ``impossible``,
which always route to the operations team, and ``local_excess`` (a station's hourly value above
its region's background, evaluated by the region stage; needs the ``[regional]`` section).
Limits may be numbers or ``limit = "gb3095"``: the
GB 3095 Grade II limit of the rule's pollutant and period, taken from the catalogue's ``[limits]``
tables and versioned by the reading's date (GB 3095-2026 from 2026-03-01, China time).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from airgrid.models.common import Pollutant, Severity
from airgrid.models.warnings import WarningLevel

WARNING_LEVELS: tuple[WarningLevel, ...] = ("none", "blue", "yellow", "orange", "red")
Period = Literal["1h", "8h", "24h", "day"]
Gb3095 = Literal["gb3095-2012", "gb3095-2026", "gb3095-2026-final"]
# Which column of the GB 3095 table a rule period reads: sliding 24 h and calendar day both use
# the 24 h limit; O3 8 h uses the daily-maximum 8 h limit, applied to every sliding 8 h window.
LIMIT_COLUMN: dict[str, str] = {"1h": "1h", "8h": "8h_daily_max", "24h": "24h", "day": "24h"}


class RulesError(Exception):
    """The rules file is unreadable or wrong; the message names the rule and field."""


class _Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    severity: Severity = "major"
    description: str = ""
    levels: tuple[WarningLevel, ...] = Field(
        (), description="only active under these warning levels (empty: always)"
    )
    clear_hours: int = Field(
        1, ge=1, le=48, description="consecutive calm evaluations (hours; readings for DQ) to clear"
    )


class _Threshold(_Rule):
    pollutant: Pollutant
    threshold: float | None = Field(None, gt=0)
    limit: Literal["gb3095"] | None = None
    clear_below: float | None = Field(None, ge=0, description="hysteresis; default ratio x limit")
    clear_ratio: float = Field(0.8, gt=0, le=1)
    route: Literal["grid", "operations"] = "grid"

    @model_validator(mode="after")
    def _one_limit(self) -> _Threshold:
        if (self.threshold is None) == (self.limit is None):
            raise ValueError("give exactly one of threshold (a number) or limit = 'gb3095'")
        if self.threshold is not None and self.clear_below is not None and self.clear_below > self.threshold:
            raise ValueError(f"clear_below {self.clear_below} is above threshold {self.threshold}")
        return self


class ExceedanceRule(_Threshold):
    """The average over ``period`` above the limit opens an episode; it clears after
    ``clear_hours`` consecutive evaluations at or below ``clear_below`` (hysteresis)."""

    kind: Literal["exceedance"] = "exceedance"
    period: Period = "1h"

    @model_validator(mode="after")
    def _o3_8h(self) -> ExceedanceRule:
        if self.period == "8h" and self.pollutant != "o3":
            raise ValueError("period 8h exists for o3 only")
        return self


class SustainedRule(_Threshold):
    """``hours`` consecutive valid hourly values above the limit."""

    kind: Literal["sustained"] = "sustained"
    period: Literal["1h"] = "1h"
    hours: int = Field(3, ge=2, le=24)


class AqiRule(_Rule):
    """Real-time AQI category (HJ 633 level 1..6, or the EPA level) at or above ``min_level``."""

    kind: Literal["aqi_category"] = "aqi_category"
    min_level: int = Field(ge=2, le=6)
    route: Literal["grid", "operations"] = "grid"


class RiseRule(_Rule):
    """Hourly value at least ``factor`` x the mean of the previous ``baseline_hours`` and at least
    ``min_rise`` above it; clears below ``clear_factor`` x baseline."""

    kind: Literal["sudden_rise"] = "sudden_rise"
    pollutant: Pollutant
    factor: float = Field(2.0, gt=1)
    min_rise: float = Field(50.0, gt=0)
    baseline_hours: int = Field(24, ge=3, le=47)
    min_baseline_hours: int = Field(12, ge=1, le=47)
    clear_factor: float = Field(1.5, ge=1)
    route: Literal["grid", "operations"] = "grid"

    @model_validator(mode="after")
    def _consistent(self) -> RiseRule:
        if self.min_baseline_hours > self.baseline_hours:
            raise ValueError("min_baseline_hours is above baseline_hours")
        if self.clear_factor > self.factor:
            raise ValueError("clear_factor is above factor")
        return self


class SilentRule(_Rule):
    """No reading for ``after_s`` seconds, by event time and by arrival (fires with no reading)."""

    kind: Literal["silent"] = "silent"
    after_s: int = Field(3600, ge=1, le=7 * 86400)
    arrival_s: int | None = Field(
        None,
        ge=1,
        le=7 * 86400,
        description="quiet time by arrival (default after_s): shorter lets a "
        "replay or backlog of old readings be judged sooner",
    )
    route: Literal["operations"] = "operations"


class FlatlineRule(_Rule):
    """The same value in ``readings`` consecutive readings (values at or below ``min_value``,
    e.g. the detection limit, are legitimately constant and do not count)."""

    kind: Literal["flatline"] = "flatline"
    readings: int = Field(12, ge=3, le=1000)
    pollutants: tuple[Pollutant, ...] = ("pm25", "pm10", "so2", "no2", "co", "o3")
    min_value: float = Field(0.0, ge=0)
    route: Literal["operations"] = "operations"


class ImpossibleRule(_Rule):
    """Physically impossible values: negative, PM2.5 above PM10 beyond the tolerance, or at or
    above the instrument's range. Such values are also kept out of the averages."""

    kind: Literal["impossible"] = "impossible"
    pm25_over_pm10_ratio: float = Field(1.1, ge=1, description="pm25 > pm10 x ratio + abs is impossible")
    pm25_over_pm10_abs: float = Field(5.0, ge=0)
    readings: int = Field(
        1,
        ge=1,
        le=1000,
        description="consecutive impossible readings of a pollutant before an episode opens (the "
        "values are kept out of the averages from the first)",
    )
    ranges: dict[Pollutant, float] = Field(default_factory=dict, description="instrument range maxima")
    route: Literal["operations"] = "operations"


class LocalExcessRule(_Rule):
    """A station's hourly value above its region's background (``[regional]``) by at least
    ``above_abs`` AND by at least ``above_ratio`` x the background, for ``hours`` consecutive
    hours: a local source. Calm: below both margins. Dispatches to the station's level-3 grid
    even during a regional episode."""

    kind: Literal["local_excess"] = "local_excess"
    pollutant: Pollutant
    above_abs: float = Field(35.0, gt=0, description="value - background at least this")
    above_ratio: float = Field(0.5, ge=0, description="value at least (1 + ratio) x background")
    hours: int = Field(2, ge=1, le=24)
    route: Literal["grid"] = "grid"


AnyRule = Annotated[
    ExceedanceRule
    | SustainedRule
    | AqiRule
    | RiseRule
    | SilentRule
    | FlatlineRule
    | ImpossibleRule
    | LocalExcessRule,
    Field(discriminator="kind"),
]


class Profile(BaseModel):
    """A stricter rule set under a heavy-pollution warning level."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold_scale: float = Field(1.0, gt=0, le=1, description="multiplies concentration limits")
    aqi_level_shift: int = Field(0, ge=0, le=3, description="lowers aqi_category min_level")
    overrides: dict[str, dict[str, float]] = Field(default_factory=dict, description="rule id -> field")


class Updates(BaseModel):
    """When an open episode sends ``updated`` on the alarms topic (docs/topics.md): on a material
    change only, and otherwise at most once per ``heartbeat_hours`` of event time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    worse_factor: float = Field(
        2.0,
        ge=1,
        le=100,
        description="a value above worse_factor x the worst value already sent is a new worst "
        "(2: it doubled; 1: any new worst value)",
    )
    heartbeat_hours: float = Field(
        24.0,
        ge=0,
        le=24 * 7,
        description="hours of event time without an event after which an episode whose condition "
        "still holds sends a heartbeat `updated` (0: none)",
    )


class RegionalEpisode(BaseModel):
    """A regional episode (haze over the whole region): at least ``share`` of the region's
    reporting stations above ``above`` for ``open_hours`` consecutive hours; it ends after
    ``clear_hours`` consecutive hours below that share."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pollutant: Pollutant = "pm25"
    above: float = Field(75.0, gt=0, description="hourly value above which a station counts")
    share: float = Field(0.6, gt=0, le=1)
    min_stations: int = Field(3, ge=1, le=10_000)
    open_hours: int = Field(1, ge=1, le=24)
    clear_hours: int = Field(2, ge=1, le=48)


class Regional(BaseModel):
    """The regional background: for each closed hour, a robust statistic of the hourly values of
    the stations of a region (the level-2 or level-1 grid above their level-3 grid)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    level: Literal[1, 2] = Field(2, description="a region is the stations' level-2 or level-1 grid")
    pollutants: tuple[Pollutant, ...] = ("pm25", "pm10", "so2", "no2", "co", "o3")
    statistic: Literal["median", "trimmed_mean"] = "median"
    trim: float = Field(0.2, ge=0, lt=0.5, description="trimmed_mean: share cut at each end")
    min_stations: int = Field(3, ge=1, le=10_000, description="fewer valid values: no background")
    wait_hours: int = Field(
        2,
        ge=1,
        le=24,
        description="an hour is complete when every active station of the region reported it or a "
        "later one; a station whose last input arrived this long ago (wall clock) is not waited for "
        "(longer than the stations' reporting interval: an hourly station speaks once an hour)",
    )
    episode: RegionalEpisode = Field(default_factory=RegionalEpisode)


class RuleCatalogue(BaseModel):
    """All rules of a deployment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = "1"
    min_coverage_s: int = Field(2700, ge=1, le=3600, description="valid hour: >= 45 min of data")
    min_day_hours: int = Field(20, ge=1, le=24, description="valid 24 h / day: >= 20 valid hours")
    min_o3_8h_hours: int = Field(6, ge=1, le=8, description="valid O3 8 h: >= 6 valid hours")
    gb3095: Literal["auto", "gb3095-2012", "gb3095-2026", "gb3095-2026-final"] = "auto"
    limits: dict[Gb3095, dict[Pollutant, dict[str, float]]] = Field(default_factory=dict)
    profiles: dict[WarningLevel, Profile] = Field(default_factory=dict)
    updates: Updates = Field(default_factory=Updates)
    regional: Regional | None = Field(
        None, description="the regional background, local excess and regional episodes (off: absent)"
    )
    rules: tuple[AnyRule, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> RuleCatalogue:
        ids = [r.id for r in self.rules]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate rule id(s): {', '.join(sorted(dup))}")
        for rule in self.rules:
            if isinstance(rule, _Threshold) and rule.limit == "gb3095":
                column = LIMIT_COLUMN[rule.period]
                for version in self.gb3095_versions():
                    if column not in self.limits.get(version, {}).get(rule.pollutant, {}):
                        raise ValueError(
                            f"rule {rule.id}: no {version} {column} limit for {rule.pollutant} in [limits]"
                        )
        self._ranges_above_limits()
        for rule in self.rules:
            if isinstance(rule, LocalExcessRule):
                if self.regional is None:
                    raise ValueError(f"rule {rule.id}: a local_excess rule needs the [regional] section")
                if rule.pollutant not in self.regional.pollutants:
                    raise ValueError(
                        f"rule {rule.id}: {rule.pollutant} is not in regional.pollutants (no background)"
                    )
        for level, profile in self.profiles.items():
            unknown = sorted(set(profile.overrides) - set(ids))
            if unknown:
                raise ValueError(f"profile {level}: override of unknown rule(s) {', '.join(unknown)}")
        return self

    def gb3095_versions(self) -> tuple[Gb3095, ...]:
        """The GB 3095 versions the catalogue uses: all three by date, or the one it pins."""
        if self.gb3095 == "auto":
            return ("gb3095-2012", "gb3095-2026", "gb3095-2026-final")
        return (self.gb3095,)

    def _ranges_above_limits(self) -> None:
        """An instrument ceiling at or below a limit would mark every exceedance impossible (and
        keep it out of the averages): the alarm could never fire."""
        highest: dict[str, tuple[float, str]] = {}
        for rule in self.rules:
            if isinstance(rule, _Threshold):
                if rule.threshold is not None:
                    values = [rule.threshold]
                else:
                    values = [self.limit(v, rule.pollutant, rule.period) for v in self.gb3095_versions()]
                for value in values:
                    if value > highest.get(rule.pollutant, (-1.0, ""))[0]:
                        highest[rule.pollutant] = (value, rule.id)
        for rule in self.rules:
            if isinstance(rule, ImpossibleRule):
                for pollutant, ceiling in rule.ranges.items():
                    if pollutant in highest and ceiling <= highest[pollutant][0]:
                        value, by = highest[pollutant]
                        raise ValueError(
                            f"rule {rule.id}: ranges.{pollutant} = {ceiling:g} is not above the {value:g} "
                            f"of rule {by}: that alarm could never fire"
                        )

    def limit(self, version: Gb3095, pollutant: str, period: str) -> float:
        return self.limits[version][pollutant][LIMIT_COLUMN[period]]  # type: ignore[index]


def load_rules(path: Path) -> RuleCatalogue:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RulesError(f"rules file {path}: {exc}") from None
    return parse_rules(raw, str(path))


def parse_rules(raw: Mapping[str, object], where: str = "rules") -> RuleCatalogue:
    """Validate a parsed rules document; a rule without ``kind`` is an ``exceedance`` rule."""
    data = dict(raw)
    rules = data.get("rules")
    if isinstance(rules, list):
        data["rules"] = [{"kind": "exceedance", **r} if isinstance(r, dict) else r for r in rules]
    try:
        return RuleCatalogue.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"]]
        msg = first["msg"].removeprefix("Value error, ")
        text = ".".join(loc)
        if loc[:1] == ["rules"] and len(loc) > 1 and isinstance(rules, list):
            index = int(first["loc"][1])
            rule = rules[index] if index < len(rules) else {}
            name = rule.get("id", index) if isinstance(rule, dict) else index
            fields = [p for p in loc[2:] if p not in _KINDS]  # drop the union's tag
            text = f"rule {name}" + (": " + ".".join(fields) if fields else "")
        raise RulesError(f"rules file {where}: {text + ': ' if text else ''}{msg}") from None


_KINDS = {
    "exceedance",
    "sustained",
    "aqi_category",
    "sudden_rise",
    "silent",
    "flatline",
    "impossible",
    "local_excess",
}
