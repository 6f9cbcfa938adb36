"""HTTP views served by the worker: Prometheus ``/metrics`` and ``/health``."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from airgrid.worker.app import AirgridApp, Runtime


def register(app: AirgridApp, rt: Runtime) -> None:
    @app.page("/metrics")  # type: ignore[untyped-decorator]
    async def metrics(web: Any, request: Any) -> Any:
        await update_consumer_lag(app, rt)
        return web.bytes(rt.metrics.render(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    async def ready(web: Any, request: Any) -> Any:
        status, problems = readiness(app, rt)
        body: dict[str, Any] = {"status": status, "app": rt.settings.app_id}
        if problems:
            body["tables"] = problems
        return web.json(body, status=200 if status == "ok" else 503)

    async def live(web: Any, request: Any) -> Any:
        # the process serves its event loop: an orchestrator must not restart it for a rebalance
        return web.json({"status": "alive", "app": rt.settings.app_id})

    app.page("/health")(ready)  # readiness, as before
    app.page("/health/ready")(ready)
    app.page("/health/live")(live)


def readiness(app: AirgridApp, rt: Runtime) -> tuple[str, dict[str, str]]:
    """``ok`` once joined, tables recovered, streams resumed, not rebalancing and every table
    writable; else why not (``recovering``, or ``tables_unusable`` with each table's reason).
    Before the first recovery completes the worker answers 503: it is up but does not process."""
    recovery = getattr(app.tables, "recovery", None)
    recovered = recovery is not None and recovery.completed.is_set()
    if not (recovered and not app.rebalancing and not getattr(app, "in_recovery", False)):
        return "recovering", {}
    problems = rt.guard.problems() if rt.guard is not None else {}
    return ("tables_unusable", problems) if problems else ("ok", {})


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
