"""``airgrid gateway``: the HJ 212-2017 station gateway process (settings: AIRGRID_GATEWAY_*)."""

from __future__ import annotations

import asyncio
import logging

import click

from airgrid.cli.base import BAD_INPUT, UNREACHABLE, OpsError, command
from airgrid.cli.common import settings
from airgrid.config.settings import SettingsError
from airgrid.gateway.settings import GatewaySettings, load_gateway_settings


def _settings_help() -> str:
    lines = ["Settings (environment):\n"]
    for name, f in GatewaySettings.model_fields.items():
        default = f.get_default(call_default_factory=True)
        lines.append(f"  AIRGRID_GATEWAY_{name.upper()}: {f.description} (default {default!r})\n")
    return "\b\n" + "".join(lines)


@command("gateway", epilog=_settings_help())
@click.option("--listen", metavar="HOST:PORT", help="overrides AIRGRID_GATEWAY_LISTEN")
@click.option("--web", metavar="HOST:PORT", help="overrides AIRGRID_GATEWAY_WEB")
def gateway(listen: str | None, web: str | None) -> int:
    """Accept HJ 212-2017 station connections and publish each data frame as a reading to the
    readings topic; answer a station only once Kafka holds its reading. Stateless: run several
    behind a TCP load balancer. The Kafka connection, topic prefix, grid directory and time zone
    are the worker's AIRGRID_* settings (docs/gateway.md)."""
    from airgrid.domain.directory import DirectoryError
    from airgrid.gateway.service import GatewayStartError, run_gateway

    overrides = {k: v for k, v in (("listen", listen), ("web", web)) if v is not None}
    s = settings()
    try:
        gs = load_gateway_settings(**overrides)
    except SettingsError as exc:
        raise OpsError(str(exc), BAD_INPUT) from None
    logging.basicConfig(level=s.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    try:
        return asyncio.run(run_gateway(s, gs))
    except (SettingsError, DirectoryError) as exc:
        raise OpsError(str(exc), BAD_INPUT) from None
    except GatewayStartError as exc:
        raise OpsError(f"gateway: {exc}", UNREACHABLE) from None
