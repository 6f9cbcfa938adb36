"""Errors that are not about the message: retried, or the worker stops; never acknowledged away.

A stage refuses a message that is itself invalid (its DLQ or rejected topic, with the reason).
Anything else that goes wrong while it handles a message (a table not ready, a broker error, a
bug) says nothing about the message: dead-lettering it would drop an alarm or a piece of feedback
for good (issue 18: 89 alarms lost that way while a table's changelog was not assigned). So the
message is retried with a capped backoff while the worker keeps its partitions. When a rebalance
interrupts the retries, the message is left unacknowledged: the consumer cannot commit past it and
reads it again from the committed offset once the rebalance is over. When the error outlives
``give_up_s``, the worker stops loudly (non-zero exit), with the message still uncommitted, so a
service manager restarts it and the message is read again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from airgrid.metrics import Metrics

log = logging.getLogger(__name__)


class WorkerStopped(RuntimeError):
    """An error outlived its retries; the worker is stopping (``give_up_s``)."""


class Retrier:
    """Runs a stage's handling of one message until it succeeds, as described above."""

    def __init__(
        self,
        app: Any,
        metrics: Metrics,
        give_up_s: float = 120.0,
        first_backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
        fatal: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.app = app
        self.fatal = fatal  # errors no retry can mend: the worker stops at once
        self.metrics = metrics
        self.give_up_s = give_up_s
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s

    def hold(self, event: Any) -> None:
        """Leave ``event``'s message uncommitted, to be read again (``CommitBarrier.hold``)."""
        self.app.consumer.hold(event.message)

    def interrupted(self) -> bool:
        """A rebalance began or the worker is stopping: the partitions may move."""
        app = self.app
        flow = getattr(app, "flow_control", None)
        return bool(
            app.rebalancing
            or getattr(app, "should_stop", False)
            or (flow is not None and not flow.is_active())
        )

    async def run(self, stage: str, event: Any, handle: Callable[[], Awaitable[None]]) -> bool:
        """True once ``handle`` succeeded; False when the message was left to be read again."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        backoff = self.first_backoff_s
        msg = event.message
        where = f"{msg.topic}/{msg.partition}@{msg.offset}"
        while True:
            try:
                await handle()
                return True
            except asyncio.CancelledError:
                self.hold(event)
                raise
            except Exception as exc:
                self.metrics.internal_errors.labels(stage).inc()
                if self.interrupted():
                    self.hold(event)
                    log.warning("%s: %s failed (%s); a rebalance began: read again after", stage, where, exc)
                    return False
                fatal = isinstance(exc, self.fatal)
                if fatal or loop.time() - started >= self.give_up_s:
                    self.hold(event)
                    why = "cannot be retried" if fatal else f"still fails after {self.give_up_s:.0f} s"
                    log.critical(
                        "%s: %s %s (%s: %s); stopping the worker so that a restart reads it again",
                        stage,
                        where,
                        why,
                        type(exc).__name__,
                        exc,
                        exc_info=exc,
                    )
                    await self.app.crash(WorkerStopped(f"{stage}: {where}: {type(exc).__name__}: {exc}"))
                    return False
                log.exception("%s: %s failed; retrying in %.1f s", stage, where, backoff)
            if not await self.pause(backoff):
                self.hold(event)
                log.warning("%s: %s left to be read again after the rebalance", stage, where)
                return False
            backoff = min(backoff * 2, self.max_backoff_s)

    async def pause(self, seconds: float) -> bool:
        """Sleep, but return False at once when a rebalance begins or the worker stops."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while (left := until - loop.time()) > 0:
            if self.interrupted():
                return False
            await asyncio.sleep(min(0.1, left))
        return not self.interrupted()
