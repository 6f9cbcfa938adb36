"""Patch: after a rebalance every partition goes back to its committed offset, committed or not.

Defect (aiokafka 0.14): ``seek_to_committed`` seeks only partitions committed above offset 0. A
partition never committed (a fresh group) or committed at 0 keeps its fetch position, past the
messages fetched but not processed before the rebalance (skipped while the flow was suspended, or
held by a stage); Faust's read offset went back to None, so they were never read again. Those
partitions now seek to the beginning (the worker reads from ``earliest`` when nothing is
committed).

Private names: Faust ``Consumer.perform_seek``, ``_committed_offset``, ``_read_offset``,
``_thread.seek_to_beginning``, ``app.topics.acks_enabled_for``.
Tests: tests/unit/test_patches.py; tests/e2e/test_fresh_start.py.
"""

from __future__ import annotations

from typing import Any

from aiokafka.structs import TopicPartition


class SeekEveryPartition:
    """Mixin for Faust's aiokafka consumer."""

    _committed_offset: Any
    _read_offset: Any
    _thread: Any
    app: Any

    async def perform_seek(self) -> None:
        await super().perform_seek()  # type: ignore[misc]
        back = [
            tp
            for tp in self.assignment()  # type: ignore[attr-defined]
            # the streams' topics only: a table changelog is sought by the table recovery
            if self.app.topics.acks_enabled_for(tp.topic) and not self._committed_offset.get(tp)
        ]
        if back:
            await self._thread.seek_to_beginning(*(TopicPartition(tp.topic, tp.partition) for tp in back))
            for tp in back:
                self._read_offset[tp] = None
