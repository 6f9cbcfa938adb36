"""Patch: a message a stage could not handle is held: never acknowledged, and no commit passes it.

Why (airgrid, issue 18): a stage that fails on a message for a reason not its own (a table not
ready, a broker error) must neither drop it nor block a rebalance (worker/retry.py). It leaves the
message to be read again once the rebalance is over, or after a restart.
Defects met on the way (Faust 0.15): 1. Faust's Cython stream iterator, the one in use when its
extension is installed, acknowledges a message inline, without ``Consumer.ack``; it skips a message
already marked acknowledged, so a held message is marked done-without-offset. 2. Faust commits the
first run of consecutive acked offsets and checks for a hole at its head only when the partition
has a committed offset above 0: on a fresh group it committed past a held message.

Private names: Faust ``Message.acked``, ``Consumer._unacked_messages``, ``_new_offset``,
``_acked``, ``_acked_index``, ``_committed_offset``, ``perform_seek``.
Tests: tests/unit/test_patches.py; tests/e2e/test_fresh_start.py (held messages read again).
"""

from __future__ import annotations

from typing import Any


class HeldMessages:
    """Mixin for Faust's aiokafka consumer."""

    _acked: Any
    _acked_index: Any
    _committed_offset: Any
    _unacked_messages: Any

    def __post_init__(self) -> None:
        super().__post_init__()  # type: ignore[misc]
        self._held: dict[Any, set[int]] = {}  # per partition, the offsets held

    def hold(self, message: Any) -> None:
        """Leave ``message`` to be read again after the next rebalance (or restart): it counts as
        neither acknowledged nor in flight (a rebalance does not wait for it), and no commit
        passes its offset."""
        message.acked = True
        self._unacked_messages.discard(message)
        self._held.setdefault(message.tp, set()).add(message.offset)

    def _new_offset(self, tp: Any) -> int | None:
        new: int | None = super()._new_offset(tp)  # type: ignore[misc]
        held = self._held.get(tp)
        if held and new is not None and new > min(held):
            # the batch runs past a held message: commit up to it, give the rest back
            hole = min(held)
            rest = [o for o in range(hole, new) if o not in held]
            self._acked[tp].extend(rest)
            self._acked_index[tp].update(rest)
            new = hole if hole > (self._committed_offset[tp] or 0) else None
        return new

    async def perform_seek(self) -> None:
        await super().perform_seek()  # type: ignore[misc]
        self._held.clear()  # every held offset lies at or past a committed one: read again now
