"""One gateway process, wired: directory, profiles, Kafka publisher, TCP server, /metrics.

The composition root of ``airgrid gateway``: settings come in already validated; SIGTERM or
SIGINT stops accepting, gives readings in flight ``shutdown_grace_seconds`` to be acknowledged
and answered, and exits 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import signal
from datetime import UTC, datetime

from airgrid.config.settings import Settings, SettingsError
from airgrid.domain.directory import Directory
from airgrid.domain.intake import Limits
from airgrid.gateway.metrics import GatewayMetrics
from airgrid.gateway.publisher import Publisher
from airgrid.gateway.server import Gateway
from airgrid.gateway.settings import GatewaySettings, build_profiles
from airgrid.gateway.web import start_web
from airgrid.kafka.topics import TopicNames, ensure_topics

log = logging.getLogger(__name__)


class GatewayStartError(Exception):
    """The gateway cannot start; the message says why and what to set."""


def raise_fd_limit(connections: int) -> int:
    """Raise the soft limit of open files towards what ``connections`` need; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = connections + 256  # Kafka, the web port, logs
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    if soft < want:
        log.warning(
            "open-file limit %d is below the %d AIRGRID_GATEWAY_MAX_CONNECTIONS need; raise `ulimit -n`",
            soft,
            want,
        )
    return soft


def now_utc() -> datetime:
    return datetime.now(UTC)


async def run_gateway(settings: Settings, gs: GatewaySettings, stop: asyncio.Event | None = None) -> int:
    directory = Directory.load(settings.grid_file)
    profiles = build_profiles(gs, settings.timezone, set(directory.stations))
    without = sorted(set(directory.stations) - {st.id for st in directory.by_mn.values()})
    if not directory.by_mn:
        raise SettingsError(f"AIRGRID_GRID_FILE: no station of {settings.grid_file} has an HJ 212 MN")
    if without:
        log.warning(
            "%d stations have no MN and cannot send through the gateway: %s", len(without), without[:10]
        )
    raise_fd_limit(gs.max_connections)
    try:
        await asyncio.wait_for(ensure_topics(settings), 30)
    except Exception as exc:
        raise GatewayStartError(
            f"cannot reach Kafka at {settings.broker} (AIRGRID_BROKER): {type(exc).__name__}: {exc}"
        ) from None
    names = TopicNames.of(settings)
    metrics = GatewayMetrics()
    gateway: Gateway | None = None
    publisher = Publisher(
        settings,
        metrics,
        timeout_s=gs.kafka_timeout_seconds,
        max_pending=gs.max_pending,
        on_drain=lambda: gateway.resume_all() if gateway else None,
    )
    await publisher.start([names.readings, names.readings_dlq])
    gateway = Gateway(
        gs=gs,
        directory=directory,
        profiles=profiles,
        limits=Limits.of(settings),
        publisher=publisher,
        metrics=metrics,
        readings_topic=names.readings,
        dlq_topic=names.readings_dlq,
        clock=now_utc,
    )
    web: asyncio.Server | None = None
    # The directory, profiles and producer live as long as the process: keep them out of the
    # garbage collector's full passes (measured: 28-40 ms pauses otherwise, straight into the p99)
    gc.collect()
    gc.freeze()
    try:
        try:
            await gateway.start()
            web = await start_web(gs.web_host, gs.web_port, metrics.render, publisher.healthy)
        except OSError as exc:
            raise GatewayStartError(
                f"cannot listen: {exc} (AIRGRID_GATEWAY_LISTEN / AIRGRID_GATEWAY_WEB)"
            ) from None
        log.info(
            "gateway listening on %s for %d stations (CRC %s, DataTime labels the %s, readings from CN %s); "
            "metrics on http://%s/metrics",
            gs.listen,
            len(directory.by_mn),
            gs.crc,
            gs.time_label,
            ",".join(gs.reading_cns),
            gs.web,
        )
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping: %d readings in flight get %.0fs", publisher.pending, gs.shutdown_grace_seconds)
        await gateway.close(gs.shutdown_grace_seconds, publisher.drain)
        return 0
    finally:
        if web is not None:
            web.close()
        await publisher.stop()
