"""``airgrid aqi pm25=80 pm10=130 ... --standard hj633-2026 --period 1h``: the AQI of concentrations."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal

import click

from airgrid.cli.base import OpsError, command
from airgrid.domain import epa
from airgrid.domain.aqi import (
    DAILY_ALIASES,
    DAILY_INDICATORS,
    DISPLAY_NAMES,
    HOURLY_INDICATORS,
    INDICATORS,
    POLLUTANTS,
    AqiResult,
    Standard,
    daily_aqi,
    hourly_aqi,
    na_reason,
    pollutant_of,
    standard_for,
    to_decimal,
    unit_of,
)
from airgrid.domain.epa import EpaResult


@command(
    "aqi",
    epilog="Pollutants: pm25 pm10 so2 no2 co o3, or explicit indicators such as "
    "pm25_24h=75 o3_8h=120 so2_24h=300.",
)
@click.argument("values", nargs=-1, required=True, metavar="NAME=VALUE...")
@click.option(
    "--standard",
    type=click.Choice([s.value for s in Standard]),
    default=None,
    help="default: the HJ 633 version in force today (China date)",
)
@click.option(
    "--period",
    type=click.Choice(["1h", "24h"]),
    default="1h",
    show_default=True,
    help="1h: real-time AQI; 24h: daily AQI (HJ 633 only)",
)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def aqi(values: tuple[str, ...], standard: str | None, period: str, as_json: bool) -> int:
    """Compute the AQI from concentrations (ug/m3; CO in mg/m3): each indicator's IAQI, the AQI,
    its category and the primary pollutant."""
    chosen = Standard(standard) if standard else standard_for(datetime.now(UTC))
    try:
        given = _parse_values(values, INDICATORS + epa.EPA_INDICATORS + tuple(DAILY_ALIASES))
        if chosen is Standard.EPA_2024:
            concs = _rename(given, epa.CLI_INDICATOR)
            used = [k for k in concs if k in epa.EPA_INDICATORS]
            result: AqiResult | EpaResult = epa.epa_result({k: concs[k] for k in used}, from_ugm3=True)
        elif period == "1h":
            concs = _rename(given, {p: f"{p}_1h" for p in POLLUTANTS})
            used = [k for k in concs if k in HOURLY_INDICATORS[chosen]]
            result = hourly_aqi({k: concs[k] for k in used}, chosen)
        else:
            aliases = {p: f"{p}_24h" for p in POLLUTANTS} | {"o3": "o3_8h"} | DAILY_ALIASES
            concs = _rename(given, aliases)
            used = [k for k in concs if k in DAILY_INDICATORS[chosen]]
            result = daily_aqi({k: concs[k] for k in used}, chosen)
    except ValueError as exc:
        raise OpsError(str(exc)) from None

    ignored = [k for k in concs if k not in used]
    if ignored:
        shown = "" if chosen is Standard.EPA_2024 else f" {period}"
        print(f"note: not used by {chosen.value}{shown}: {', '.join(ignored)}", file=sys.stderr)
    is_2012_1h = chosen is Standard.HJ633_2012 and period == "1h"
    if is_2012_1h and {"pm25_1h", "pm10_1h"} & set(ignored):
        # The classic mistake is feeding 1h PM to the 2012 real-time AQI; say what to pass instead.
        print(
            "note: hj633-2012 real-time PM IAQI uses the 24h sliding average: pass pm25_24h=... pm10_24h=...",
            file=sys.stderr,
        )
    if as_json:
        doc = result.to_dict() | {
            "period": None if chosen is Standard.EPA_2024 else period,
            "concentrations": {k: str(v) for k, v in concs.items()},
            "na_reason": _why_na(result),
        }
        print(json.dumps(doc, ensure_ascii=False, indent=2))
    else:
        print(_render(result, concs, chosen, period))
    return 0


def _why_na(result: AqiResult | EpaResult) -> str | None:
    if isinstance(result, AqiResult):
        return na_reason(result)
    return None if result.aqi is not None else "no value given is an indicator of US EPA 2024"


def _parse_values(items: Sequence[str], known: Iterable[str]) -> dict[str, Decimal]:
    valid = set(POLLUTANTS) | set(known)
    out: dict[str, Decimal] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip().lower().replace(".", "")  # PM2.5=80 works too
        if not sep or not name:
            raise OpsError(f"expected NAME=VALUE, got {item!r}")
        if name not in valid:
            expected = ", ".join(POLLUTANTS)
            raise OpsError(f"unknown pollutant {name!r} (expected one of: {expected})")
        if name in out:
            raise OpsError(f"{name} given twice")
        out[name] = to_decimal(text, name)
    return out


def _rename(values: Mapping[str, Decimal], names: Mapping[str, str]) -> dict[str, Decimal]:
    """Pollutant names -> indicators for the chosen period; ``pm25=1 pm25_1h=2`` is refused."""
    out: dict[str, Decimal] = {}
    for key, value in values.items():
        name = names.get(key, key)
        if name in out:
            raise OpsError(f"{name} given twice")
        out[name] = value
    return out


def _render(
    result: AqiResult | EpaResult, concs: Mapping[str, Decimal], standard: Standard, period: str
) -> str:
    if isinstance(result, AqiResult):
        version = standard.value.upper().replace("HJ633", "HJ 633")
        title = f"{version} " + ("real-time (1h) AQI" if period == "1h" else "daily (24h) AQI")
        head = "IAQI"
    else:
        title, head = "US EPA 2024 AQI (input in ug/m3, CO mg/m3)", "AQI"
    lines = [title, f"  {'indicator':<10} {'concentration':>16}  {head:>5}"]
    for ind, conc in concs.items():
        unit = unit_of(ind)
        sub = result.iaqi.get(ind)
        lines.append(f"  {ind:<10} {f'{conc} {unit}':>16}  {'-' if sub is None else sub:>5}")
    if result.aqi is None or result.category is None:
        lines.append(f"AQI: NA: {_why_na(result)}")
    elif isinstance(result, AqiResult):
        cat = result.category
        lines.append(f"AQI: {result.aqi}  level {cat.level} {cat.en} / {cat.zh} ({cat.colour})")
    else:
        ecat = result.category
        lines.append(f"AQI: {result.aqi}  {ecat.name} ({ecat.colour})")
    primary = ", ".join(f"{p} ({DISPLAY_NAMES[pollutant_of(p)]})" for p in result.primary)
    lines.append(f"Primary pollutant: {primary or '-'}")
    if result.missing:
        lines.append(f"Missing: {', '.join(result.missing)}")
    return "\n".join(lines)
