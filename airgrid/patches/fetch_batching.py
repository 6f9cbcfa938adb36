"""Patch: the worker's consumer can ask the broker for fuller fetches.

Not a defect but a setting Faust does not expose (Faust 0.15 hard-codes ``fetch_max_wait_ms=1500``
and leaves aiokafka's ``fetch_min_bytes`` at 1 for the worker's consumer). With readings trickling
in, a broker answers a fetch as soon as it has one byte: every fetch brings a few records and the
consumer's per-fetch work dominates (13 % of the worker's event loop at half load in a profile,
4 % in a drain of a backlog). ``AIRGRID_CONSUMER_FETCH_MIN_BYTES`` and
``AIRGRID_CONSUMER_FETCH_MAX_WAIT_MS`` set both: the broker waits until it has that many bytes or
that many milliseconds have passed. Off by default (1 byte, 1,500 ms: Faust's values); each hop of
the pipeline (readings -> ingest -> alarms -> owner) may then wait up to the maximum.

Private names: Faust ``Consumer._new_consumer_thread``, ``AIOKafkaConsumerThread._create_worker_consumer``
(and its ``app``, ``loop``, ``beacon``); aiokafka ``AIOKafkaConsumer._fetch_min_bytes``,
``_fetch_max_wait_ms`` (read when the consumer starts its fetcher).
Tests: tests/unit/test_patches.py (the consumer is created with the settings; defaults unchanged).
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

FAUST_MIN_BYTES, FAUST_MAX_WAIT_MS = 1, 1500  # what Faust 0.15 gives the worker's consumer


class FetchSettingsThread(AIOKafkaConsumerThread):  # type: ignore[misc]
    """Faust's consumer thread, giving the worker's consumer the app's fetch settings."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        min_bytes, max_wait_ms = getattr(self.app, "fetch_settings", (FAUST_MIN_BYTES, FAUST_MAX_WAIT_MS))
        consumer._fetch_min_bytes = min_bytes
        consumer._fetch_max_wait_ms = max_wait_ms
        return consumer


class FetchBatching:
    """Mixin for Faust's aiokafka consumer."""

    loop: Any
    beacon: Any

    def _new_consumer_thread(self) -> FetchSettingsThread:
        return FetchSettingsThread(self, loop=self.loop, beacon=self.beacon)  # type: ignore[arg-type]
