"""Patch: the consumer commits an offset only after Kafka has what its events wrote, and gives a
batch back when a commit does not happen.

Defects (Faust 0.15): 1. offsets are committed on a timer without waiting for the producer, so a
SIGKILL could lose table writes of events already counted as done (see ``producer``). 2. Faust
takes a commit's batch out of its acked list before the commit; when the commit does not happen
the batch was lost from the list, Faust then found the list starting above the committed offset
and never committed that partition again until a rebalance (a crash replayed everything since).

Private names: Faust ``Consumer._commit_offsets``, ``_new_offset``, ``_acked``,
``_acked_index``, ``_gap``.
Tests: tests/unit/test_patches.py (a postponed commit gives its batch back), the kill audits.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from airgrid.patches.producer import TrackingProducer
from airgrid.patches.repeated_offsets import without_duplicates

log = logging.getLogger(__name__)
FLUSH_TIMEOUT_S = 5.0


class CommitAfterWrites:
    """Mixin for Faust's aiokafka consumer."""

    _acked: Any
    _acked_index: Any
    _gap: Any
    app: Any

    def __post_init__(self) -> None:
        super().__post_init__()  # type: ignore[misc]
        # per partition, the offsets ``[low, new)`` the last ``_new_offset`` took as a batch
        self._taken: dict[Any, tuple[int, int]] = {}

    def _new_offset(self, tp: Any) -> int | None:
        # remember the batch Faust takes out of the acked list, to give it back if need be
        acked = self._acked[tp]
        low = None
        if acked:
            low = min(acked)
            gap = self._gap[tp]
            if gap:  # gap offsets below the lowest ack join the batch too
                low = min([low, *(iv.begin for iv in gap.overlap(0, max(acked)))])
        new: int | None = super()._new_offset(tp)  # type: ignore[misc]
        if new is not None and low is not None:
            self._taken[tp] = (low, new)
        return new

    def _give_back(self, offsets: Mapping[Any, int]) -> None:
        """A commit that did not happen: put its batches back in the acked lists, so the next
        commit covers them."""
        for tp in offsets:
            batch = self._taken.pop(tp, None)
            if batch is None or tp not in self._acked:  # revoked meanwhile: nothing to give back
                continue
            low, new = batch
            acked = self._acked[tp]
            acked.extend(range(low, new))
            without_duplicates(acked, None)
            self._acked_index[tp].update(range(low, new))

    async def _commit_offsets(self, offsets: Mapping[Any, int], start_new_transaction: bool = True) -> bool:
        producer = self.app.producer
        if not isinstance(producer, TrackingProducer):  # install() sets both classes together
            raise TypeError(f"the consumer needs a TrackingProducer, not {type(producer).__name__}")
        if not await producer.drain(FLUSH_TIMEOUT_S):
            # while the broker is away or a rebalance has suspended the flow the writes may not
            # complete; a commit that is not made now is made later (the events replay, none lost)
            log.warning("writes unacknowledged after %.0f s: offset commit postponed", FLUSH_TIMEOUT_S)
            self._give_back(offsets)
            return False
        if producer.failed:
            # a state or output write was refused for good: committing would make it permanent;
            # keep the offsets where they are, so a restart replays and writes it again
            log.error(
                "%d producer writes failed; offsets stay uncommitted until the worker restarts",
                producer.failed,
            )
            self._give_back(offsets)
            return False
        result: bool = await super()._commit_offsets(  # type: ignore[misc]
            offsets, start_new_transaction=start_new_transaction
        )
        if result:
            for tp in offsets:
                self._taken.pop(tp, None)
        else:
            self._give_back(offsets)
        return result
