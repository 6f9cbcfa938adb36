"""HTTP views served by the worker: Prometheus ``/metrics`` and ``/health``."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from airgrid.streams.app import AirgridApp, Runtime


def register(app: AirgridApp, rt: Runtime) -> None:
    @app.page("/metrics")  # type: ignore[untyped-decorator]
    async def metrics(web: Any, request: Any) -> Any:
        await update_consumer_lag(app, rt)
        return web.bytes(rt.metrics.render(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health")  # type: ignore[untyped-decorator]
    async def health(web: Any, request: Any) -> Any:
        ready = is_ready(app)
        return web.json(
            {"status": "ok" if ready else "recovering", "app": rt.settings.app_id},
            status=200 if ready else 503,
        )


def is_ready(app: AirgridApp) -> bool:
    """Joined the group, tables recovered, streams resumed, and not rebalancing now. Before the
    first recovery completes the worker answers 503: it is up but does not process yet."""
    recovery = getattr(app.tables, "recovery", None)
    recovered = recovery is not None and recovery.completed.is_set()
    return bool(recovered and not app.rebalancing and not getattr(app, "in_recovery", False))


async def update_consumer_lag(app: AirgridApp, rt: Runtime) -> None:
    """Lag per topic of the partitions this worker holds: high watermark minus position."""
    consumer = getattr(app, "consumer", None)
    if consumer is None:
        return
    try:
        assignment = consumer.assignment()
        lag: dict[str, int] = {}
        for tp in assignment:
            high = consumer.highwater(tp)
            pos = await consumer.position(tp)
            if high is not None and pos is not None:
                lag[tp.topic] = lag.get(tp.topic, 0) + max(0, high - pos)
    except Exception:  # the consumer is (re)starting: report nothing rather than fail a scrape
        return
    for topic, value in lag.items():
        rt.metrics.consumer_lag.labels(topic).set(value)
