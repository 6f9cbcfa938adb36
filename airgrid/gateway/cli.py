"""``airgrid gateway``: the HJ 212-2017 station gateway process (settings: AIRGRID_GATEWAY_*)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from airgrid.config.settings import SettingsError, load_settings
from airgrid.domain.directory import DirectoryError
from airgrid.gateway.settings import GatewaySettings, load_gateway_settings

DESCRIPTION = """\
Accept HJ 212-2017 station connections and publish each data frame as a reading to the readings
topic; answer a station only once Kafka holds its reading. Stateless: run several behind a TCP
load balancer. Settings are AIRGRID_GATEWAY_* variables (docs/gateway.md); the Kafka connection,
topic prefix, grid directory and time zone are the worker's AIRGRID_* settings.
"""


def _settings_help() -> str:
    lines = ["settings (environment):"]
    for name, f in GatewaySettings.model_fields.items():
        default = f.get_default(call_default_factory=True)
        lines.append(f"  AIRGRID_GATEWAY_{name.upper():<24} {f.description} (default {default!r})")
    return "\n".join(lines)


def cmd_gateway(argv: list[str]) -> int:
    from airgrid.gateway.service import GatewayStartError, run_gateway

    p = argparse.ArgumentParser(
        prog="airgrid gateway",
        description=DESCRIPTION,
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--listen", metavar="HOST:PORT", help="overrides AIRGRID_GATEWAY_LISTEN")
    p.add_argument("--web", metavar="HOST:PORT", help="overrides AIRGRID_GATEWAY_WEB")
    a = p.parse_args(argv)
    overrides = {k: v for k, v in (("listen", a.listen), ("web", a.web)) if v is not None}
    try:
        settings = load_settings()
        gs = load_gateway_settings(**overrides)
    except SettingsError as exc:
        print(f"airgrid: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    try:
        return asyncio.run(run_gateway(settings, gs))
    except (SettingsError, DirectoryError) as exc:
        print(f"airgrid: {exc}", file=sys.stderr)
        return 2
    except GatewayStartError as exc:
        print(f"airgrid gateway: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
