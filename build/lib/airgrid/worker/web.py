"""HTTP views served by the worker: Prometheus ``/metrics``, readiness and liveness.

The binding registers them (``app.page``); they read the app's state and the table guard only.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from airgrid.metrics import Metrics
from airgrid.patches.table_guard import TableGuard


class Views:
    """``/metrics``, ``/health/ready`` (also ``/health``) and ``/health/live``."""

    def __init__(self, app: Any, app_id: str, metrics: Metrics, guard: TableGuard) -> None:
        self.app = app
        self.app_id = app_id
        self.metrics = metrics
        self.guard = guard

    async def metrics_page(self, web: Any, request: Any) -> Any:
        await self.update_consumer_lag()
        return web.bytes(self.metrics.render(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    async def ready(self, web: Any, request: Any) -> Any:
        status, problems = self.readiness()
        body: dict[str, Any] = {"status": status, "app": self.app_id}
        if problems:
            body["tables"] = problems
        return web.json(body, status=200 if status == "ok" else 503)

    async def live(self, web: Any, request: Any) -> Any:
        # the process serves its event loop: an orchestrator must not restart it for a rebalance
        return web.json({"status": "alive", "app": self.app_id})

    def readiness(self) -> tuple[str, dict[str, str]]:
        """``ok`` once joined, tables recovered, streams resumed, not rebalancing and every table
        writable; else why not (``recovering``, or ``tables_unusable`` with each table's reason).
        Before the first recovery completes the worker answers 503: it is up but does not process."""
        app = self.app
        recovery = getattr(app.tables, "recovery", None)
        recovered = recovery is not None and recovery.completed.is_set()
        if not (recovered and not app.rebalancing and not getattr(app, "in_recovery", False)):
            return "recovering", {}
        problems = self.guard.problems()
        return ("tables_unusable", problems) if problems else ("ok", {})

    async def update_consumer_lag(self) -> None:
        """Lag per topic of the partitions this worker holds: high watermark minus position."""
        consumer = getattr(self.app, "_consumer", None)
        if consumer is None:
            return
        try:
            lag: dict[str, int] = {}
            for tp in consumer.assignment():
                high = consumer.highwater(tp)
                pos = await consumer.position(tp)
                if high is not None and pos is not None:
                    lag[tp.topic] = lag.get(tp.topic, 0) + max(0, high - pos)
        except Exception:  # the consumer is (re)starting: report nothing rather than fail a scrape
            return
        for topic, value in lag.items():
            self.metrics.consumer_lag.labels(topic).set(value)
