"""Patch: a commit never passes a message whose effects are not saved yet.

Two kinds of such messages. 1. Held (airgrid, issue 18): a stage that fails on a message for a
reason not its own (a table not ready, a broker error) must neither drop it nor block a rebalance
(worker/retry.py); it leaves the message to be read again after the rebalance, or a restart.
2. Unsaved (airgrid, issue 20): ingest keeps station state in memory between checkpoints; the
readings processed since the last checkpoint are done only once the checkpoint is written, so each
is deferred until ingest says it is saved.
Defects met on the way (Faust 0.15): Faust's Cython stream iterator, the one in use when its
extension is installed, acknowledges a message inline, without ``Consumer.ack``, and skips one
already marked acknowledged: a held message is marked done-without-offset. Faust commits the first
run of consecutive acked offsets and checks for a hole at its head only when the partition has a
committed offset above 0: on a fresh group it committed past a held message. Faust's recovery
resumes the flow before it awaits the seek to the committed offsets, so the streams process
messages of the new assignment during that seek; forgetting the unsaved offsets at the seek let a
commit pass readings whose states were still only in memory, and a kill or a rebalance before the
next checkpoint lost them (found by the fault campaign: alarms lost and different).

Private names: Faust ``Message.acked``, ``Consumer._unacked_messages``, ``_new_offset``,
``_acked``, ``_acked_index``, ``_committed_offset``, ``perform_seek``.
Tests: tests/unit/test_internal_errors.py, tests/unit/test_patches.py (the barrier);
tests/e2e/test_fresh_start.py (held messages read again); the kill audits (between checkpoints).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


class CommitBarrier:
    """Mixin for Faust's aiokafka consumer."""

    _acked: Any
    _acked_index: Any
    _committed_offset: Any
    _unacked_messages: Any

    def __post_init__(self) -> None:
        super().__post_init__()  # type: ignore[misc]
        self._held: dict[Any, set[int]] = {}  # per partition, the offsets held
        self._unsaved: dict[Any, int] = {}  # per partition, the first offset not saved yet

    def hold(self, message: Any) -> None:
        """Leave ``message`` to be read again after the next rebalance (or restart): it counts as
        neither acknowledged nor in flight (a rebalance does not wait for it), and no commit
        passes its offset."""
        message.acked = True
        self._unacked_messages.discard(message)
        self._held.setdefault(message.tp, set()).add(message.offset)

    def defer(self, message: Any) -> None:
        """No commit passes ``message`` until ``saved`` names its topic."""
        self._unsaved.setdefault(message.tp, message.offset)

    def saved(self, topics: Collection[str]) -> None:
        """Everything deferred so far on ``topics`` is saved: commits may pass it."""
        for tp in [tp for tp in self._unsaved if tp.topic in topics]:
            del self._unsaved[tp]

    def _barrier(self, tp: Any) -> int | None:
        held = self._held.get(tp)
        unsaved = self._unsaved.get(tp)
        lows = [x for x in (min(held) if held else None, unsaved) if x is not None]
        return min(lows) if lows else None

    def _new_offset(self, tp: Any) -> int | None:
        new: int | None = super()._new_offset(tp)  # type: ignore[misc]
        hole = self._barrier(tp)
        if hole is not None and new is not None and new > hole:
            # the batch runs past a message not saved: commit up to it, give the rest back
            held = self._held.get(tp, set())
            rest = [o for o in range(hole, new) if o not in held]
            self._acked[tp].extend(rest)
            self._acked_index[tp].update(rest)
            new = hole if hole > (self._committed_offset[tp] or 0) else None
        return new

    async def perform_seek(self) -> None:
        await super().perform_seek()  # type: ignore[misc]
        # every partition goes back to its committed offset, at or before each held message: they
        # are all read again now. The unsaved ones stay unsaved: Faust's recovery awaits this seek
        # with the flow already resumed, so a stage may have processed them in the new generation
        # meanwhile (their effects in memory, not yet checkpointed); only ``saved`` releases them.
        # Those of a partition gone, or below its committed offset (another worker's commit passed
        # them), belong to states already dropped: kept, they would cap a later commit at an old
        # offset (and give it back a range of every offset since)
        self._held.clear()
        assigned = self.assignment()  # type: ignore[attr-defined]
        for tp, first in list(self._unsaved.items()):
            committed = self._committed_offset.get(tp)
            if tp not in assigned or (committed is not None and first < committed):
                del self._unsaved[tp]
