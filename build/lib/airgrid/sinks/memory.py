"""An in-memory sink: what a sink would write, in a list (tests, and a template for a new sink)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from airgrid.sinks.base import Record, Written


@dataclass
class MemorySink:
    """Keeps one decoded message per (topic, partition, offset): writing twice changes nothing."""

    name: str
    topic_names: tuple[str, ...]
    rows: dict[tuple[str, int, int], object] = field(default_factory=dict)
    fail_next: int = 0  # the next N writes raise (a database that is away)

    def topics(self) -> tuple[str, ...]:
        return self.topic_names

    def setup(self) -> None:
        return None

    def write(self, records: Sequence[Record]) -> Written:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("the sink is away")
        written = Written()
        for r in records:
            try:
                value = orjson.loads(r.value or b"")
            except orjson.JSONDecodeError:
                written.unreadable += 1
                continue
            key = (r.topic, r.partition, r.offset)
            written.rows += key not in self.rows
            written.kinds[r.topic] = written.kinds.get(r.topic, 0) + 1
            self.rows[key] = value
        return written
