"""Follow a whole topic from its beginning, forever, on every worker (a broadcast read).

Not a consumer group: each worker gets every partition (the ``warnings`` topic is tiny and every
station partition needs it). A broker hiccup restarts the read after a pause; the caller counts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer

from airgrid.config.settings import Settings
from airgrid.kafka.client import kafka_client_options

log = logging.getLogger(__name__)


async def follow(
    settings: Settings,
    topic: str,
    handle: Callable[[bytes | None], object],
    on_failure: Callable[[BaseException], None] = lambda exc: None,
    pause_s: float = 5.0,
) -> None:
    """Call ``handle`` with the value of every message of ``topic``, from the first, until
    cancelled; a failed read is reported to ``on_failure`` and started again after ``pause_s``."""
    while True:
        consumer = AIOKafkaConsumer(
            topic,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=5000,
            **kafka_client_options(settings),
        )
        try:
            await consumer.start()
            async for msg in consumer:
                handle(msg.value)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            on_failure(exc)
            log.exception("reading %s failed; again in %.0f s", topic, pause_s)
            await asyncio.sleep(pause_s)
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
