"""The alarm rule catalogue as data (a TOML file), validated at start."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from airgrid.models.common import Pollutant, Severity


class RulesError(Exception):
    """The rules file is unreadable or wrong; the message names the rule and field."""


class ExceedanceRule(BaseModel):
    """Hourly average of a pollutant above a threshold opens an episode; it clears after
    ``clear_hours`` consecutive valid hours at or below ``clear_below`` (hysteresis)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    kind: Literal["exceedance"] = "exceedance"
    pollutant: Pollutant
    period: Literal["1h"] = "1h"
    threshold: float = Field(gt=0)
    clear_below: float = Field(ge=0)
    clear_hours: int = Field(1, ge=1, le=48)
    severity: Severity = "major"
    route: Literal["grid", "operations"] = "grid"
    description: str = ""

    @model_validator(mode="after")
    def _hysteresis(self) -> ExceedanceRule:
        if self.clear_below > self.threshold:
            raise ValueError(f"clear_below {self.clear_below} is above threshold {self.threshold}")
        return self


class RuleCatalogue(BaseModel):
    """All rules of a deployment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = "1"
    min_coverage_s: int = Field(2700, ge=1, le=3600, description="valid hour: >= 45 min of data")
    rules: tuple[ExceedanceRule, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> RuleCatalogue:
        ids = [r.id for r in self.rules]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate rule id(s): {', '.join(sorted(dup))}")
        return self


def load_rules(path: Path) -> RuleCatalogue:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RulesError(f"rules file {path}: {exc}") from None
    try:
        return RuleCatalogue.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RulesError(f"rules file {path}: {where}: {first['msg']}") from None
