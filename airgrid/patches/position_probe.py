"""Patch: Faust's livelock probe skips a partition whose fetch position is being reset.

Defect (Faust 0.15 with aiokafka 0.14): every 2.5 commit intervals, when no rebalance is under
way, Faust's commit livelock detector (``Consumer._commit_livelock_detector``) reads each assigned
partition's fetch position from aiokafka (``TopicPartitionState.position``), a property that
asserts the position is known. A partition waiting for an offset reset has none: during the seek
after a rebalance (``seek_to_beginning`` of a partition never committed, the ``seek`` patch), or
after an out-of-range reset. The detector checks ``app.rebalancing`` once per round, then awaits
between partitions, so a rebalance may begin half-way. The AssertionError crashed the consumer
service and with it the worker (found by a 20-minute fault campaign: a worker exited with 1 right
after "Seek stream partitions to committed offsets"). The probe is a diagnostic (it logs slow
processing and changes nothing), so such a partition is skipped for that round.

Private names: Faust ``Consumer.verify_event_path``, ``Consumer._thread``,
``AIOKafkaConsumerThread._consumer``; aiokafka ``AIOKafkaConsumer._fetcher``,
``Fetcher._subscriptions``, ``TopicPartitionState.has_valid_position``.
Tests: tests/unit/test_patches.py.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka.structs import TopicPartition

log = logging.getLogger(__name__)


def position_known(consumer: Any, tp: Any) -> bool:
    """Does aiokafka ``consumer`` (None: not created yet) know the fetch position of ``tp``? True
    when it cannot tell: Faust's probe then runs as it would."""
    assignment = consumer
    for name in ("_fetcher", "_subscriptions", "subscription", "assignment"):
        assignment = getattr(assignment, name, None)
    if assignment is None:
        return True
    state = assignment.state_value(TopicPartition(tp.topic, tp.partition))
    return state is None or bool(state.has_valid_position)


class PositionProbe:
    """Mixin for Faust's aiokafka consumer."""

    _thread: Any

    def verify_event_path(self, now: float, tp: Any) -> None:
        try:
            return super().verify_event_path(now, tp)  # type: ignore[misc, no-any-return]
        except AssertionError:
            # aiokafka's position property: asked again, as its thread may reset it at any time
            if position_known(getattr(self._thread, "_consumer", None), tp):
                raise
            log.debug("%s: fetch position being reset; livelock probe skipped", tp)
            return None
