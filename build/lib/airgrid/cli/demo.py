"""``airgrid demo``: the whole loop on a local broker, with live output."""

from __future__ import annotations

import os
from typing import Any

from airgrid.cli.base import command
from airgrid.cli.common import run_async
from airgrid.cli.simulate import sim_config, sim_options
from airgrid.config.settings import Settings


@command("demo")
@sim_options
def demo(**sim: Any) -> int:
    """The whole alarm loop on a local Kafka broker (started here, on the port of AIRGRID_BROKER;
    an AIRGRID_BROKER that is set is used instead), fed by simulated stations, with live output.
    Ctrl-C, SIGTERM or SIGHUP stops everything it started (exit 130, 143, 129)."""
    cfg = sim_config(**sim)
    given = "AIRGRID_BROKER" in os.environ

    async def go(s: Settings) -> int:
        from airgrid.demo import run_demo

        return await run_demo(s, given, cfg)

    return run_async(go)
