"""Tables the consumer group left without their changelog: noticed, reported, and repaired.

Faust's assignor assigns only the topics the group leader's metadata shows at the moment of the
join ("Ignoring missing topic"), and the consumer refreshes its metadata only every five minutes.
A table whose changelog was created a moment too late (a fresh app id) then raises
``PartitionsMismatch`` at every write for the worker's whole life, while ``/health`` said 200
(issue 18). ``ensure_topics`` now creates every changelog and waits until the brokers show it
before the worker starts; this guard covers what remains (a broker whose metadata lags, a
changelog deleted by hand): it reports each unusable table (readiness 503, a gauge) and asks the
consumer for fresh metadata, which makes it rejoin as soon as the changelog appears, or asks for a
rejoin outright when the metadata is right but the assignment still lacks the changelog.

aiokafka internals used, from the consumer's own thread: ``AIOKafkaClient.force_metadata_update``
and ``GroupCoordinator.request_rejoin``, reached through Faust's ``consumer._thread``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from airgrid.metrics import Metrics

log = logging.getLogger(__name__)


class TableGuard:
    """Checks every table of ``app`` against the consumer's metadata and assignment."""

    def __init__(
        self,
        app: Any,
        sources: Mapping[str, tuple[str, ...]],
        partitions: int,
        metrics: Metrics,
        refresh_every_s: float = 2.0,
        rejoin_every_s: float = 10.0,
    ) -> None:
        self.app = app
        self.sources = sources  # table name -> the topics whose events write it
        self.partitions = partitions
        self.metrics = metrics
        self.refresh_every_s = refresh_every_s
        self.rejoin_every_s = rejoin_every_s
        self._last_refresh = float("-inf")
        self._last_rejoin = float("-inf")
        self._reported: set[str] = set()

    def _consumer_thread(self) -> Any:
        consumer = getattr(self.app, "_consumer", None)  # not app.consumer: that would create one
        thread = getattr(consumer, "_thread", None)
        if thread is None or getattr(thread, "_consumer", None) is None:
            return None
        return thread

    def problems(self) -> dict[str, str]:
        """Table name -> why it cannot be written now; empty when all can (or nothing is
        known yet: before the consumer runs, readiness is false for other reasons)."""
        thread = self._consumer_thread()
        if thread is None:
            return {}
        assigned = thread.assignment()
        found: dict[str, str] = {}
        for name, table in self.app.tables.items():
            changelog = table.changelog_topic_name
            # what Faust's table write checks (``PartitionsMismatch``); None on a member that is
            # not the group's leader, whose coordinator keeps no metadata snapshot: not checked
            shown = thread.topic_partitions(changelog)
            if shown is not None and shown != self.partitions:
                found[name] = f"changelog {changelog} has {shown} partitions in the consumer's metadata"
                continue
            wanted = {tp.partition for tp in assigned if tp.topic in self.sources.get(name, ())}
            have = {tp.partition for tp in assigned if tp.topic == changelog}
            if missing := wanted - have:
                found[name] = f"changelog {changelog} partitions {sorted(missing)} not assigned"
        return found

    async def check(self, now: float) -> dict[str, str]:
        """One look (a timer calls it every second): report, and repair what it can."""
        app = self.app
        if app.rebalancing or getattr(app, "in_recovery", False):
            return {}
        found = self.problems()
        self.metrics.tables_unusable.set(len(found))
        for name in set(found) - self._reported:
            log.error("table %s cannot be written: %s; refreshing metadata to rejoin", name, found[name])
        for name in self._reported - set(found):
            log.warning("table %s can be written again", name)
        self._reported = set(found)
        if not found:
            return found
        thread = self._consumer_thread()
        metadata_wrong = any("metadata" in why for why in found.values())
        if metadata_wrong and now - self._last_refresh >= self.refresh_every_s:
            self._last_refresh = now
            await thread.cast_thread(_refresh_metadata, thread)  # its answer may take a while
        elif not metadata_wrong and now - self._last_rejoin >= self.rejoin_every_s:
            self._last_rejoin = now
            log.warning("requesting a rejoin: the assignment lacks changelog partitions")
            await thread.cast_thread(_request_rejoin, thread)
        return found


async def _refresh_metadata(thread: Any) -> None:
    # a changed partition count of a subscribed topic makes aiokafka's coordinator rejoin
    await thread._ensure_consumer()._client.force_metadata_update()


async def _request_rejoin(thread: Any) -> None:
    thread._ensure_consumer()._coordinator.request_rejoin()
