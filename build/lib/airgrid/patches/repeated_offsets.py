"""Patch: offsets listed twice in Faust's acked list are dropped, so a commit takes the whole run.

Defect (Faust 0.15): after a rebalance, Faust's gap bookkeeping (offsets skipped between two
fetched messages count as done) can add a range of offsets that were already acked, so every
offset appears twice: ``[n, n, n+1, n+1, ...]`` splits into runs of one or two, and each commit
then advances the offset by one (seen: 66-109 s to commit a drained backlog; a crash in that window
re-read it). A repeated offset tells nothing new: dropping it keeps the same set of done offsets.

Private names: Faust ``Consumer._new_offset`` and ``_acked``.
Tests: tests/unit/test_patches.py (49 commits without, 2 with); the scale-out benchmark.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def without_duplicates(acked: list[int], committing: int | None) -> int:
    """Sort ``acked`` in place, without repeats nor offsets below ``committing``; return how many
    entries went."""
    floor = -1 if committing is None else committing
    kept = sorted({o for o in acked if o >= floor})
    dropped = len(acked) - len(kept)
    if dropped:
        acked[:] = kept
    return dropped


class RepeatedOffsets:
    """Mixin for Faust's aiokafka consumer."""

    _acked: Any

    def _new_offset(self, tp: Any) -> int | None:
        new: int | None = super()._new_offset(tp)  # type: ignore[misc]
        acked = self._acked[tp]
        if acked and (new is not None or len(acked) > 1):
            dropped = without_duplicates(acked, new)
            if dropped:
                log.info("%s: %d repeated or committed offsets dropped from the acked list", tp, dropped)
        return new
