"""Patch: a resume of the flow while the streams flow keeps what their queues hold.

Defect (Faust 0.15): ``resume()`` empties every stream's queue, which is right after a
``suspend()`` (what was queued before a rebalance belongs to the previous assignment; the consumer
reads it again from the committed offsets). But when a rebalance needs no table recovery, or once
it is done, Faust's recovery resumes the flow, then the stream partitions, awaits the seek to the
committed offsets and only then calls ``resume()`` a second time: what the fetcher delivered in
between was dropped from the queues while the consumer's position was already past it. A station's
``source`` then passed readings it never applied; read again later they looked like replays and
were skipped for good: alarms lost or different (found by a worker stalled past its session
timeout under CPU load, 3 runs in 7). So a resume while the flow is active keeps the streams'
queues and empties only the table changelog queue, as before.

Private names: Faust ``App.flow_control`` (replaced by ``PatchedApp``), ``TableManager._changelog_queue``.
Tests: tests/unit/test_patches.py (queues kept; records fetched during the recovery seek kept),
tests/reliability/test_worker_stall.py.
"""

from __future__ import annotations

from typing import Any

from mode.utils.queues import FlowControlEvent


class StreamFlowControl(FlowControlEvent):  # type: ignore[misc]
    """The app's flow control, which never empties the streams' queues while they are flowing."""

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app

    def resume(self) -> None:
        if not self.is_active():
            super().resume()
            return
        changelog = getattr(self.app.tables, "_changelog_queue", None)
        if changelog is not None:
            changelog.clear()
