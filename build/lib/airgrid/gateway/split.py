"""Split packets (Flag D, ``PNUM``/``PNO``) held per connection until their message is complete.

A message is keyed by (MN, CN, PNUM): its packets may share a QN (one interaction) or carry one
each (some data units number history uploads that way); both complete when PNO 1..PNUM are in. A
packet sent again replaces the held one. Sets are bounded in number and age. Pure: the caller gives
the time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
Key = tuple[str, str, int]


@dataclass
class _Held(Generic[T]):
    packets: dict[int, T] = field(default_factory=dict)
    last: float = 0.0


class Splits(Generic[T]):
    """Held packets of incomplete split messages of one connection."""

    __slots__ = ("_sets", "max_sets", "timeout_s")

    def __init__(self, max_sets: int = 4, timeout_s: float = 60.0) -> None:
        self.max_sets = max_sets
        self.timeout_s = timeout_s
        self._sets: dict[Key, _Held[T]] = {}

    def __len__(self) -> int:
        return len(self._sets)

    def add(self, key: Key, pno: int, packet: T, now: float) -> tuple[list[T] | None, list[list[T]]]:
        """Hold ``packet``; return the whole message (packets in PNO order) when it is complete,
        and the incomplete messages pushed out to make room (oldest first)."""
        evicted: list[list[T]] = []
        held = self._sets.get(key)
        if held is None:
            while len(self._sets) >= self.max_sets:
                oldest = min(self._sets, key=lambda k: self._sets[k].last)
                evicted.append(self._packets(self._sets.pop(oldest)))
            held = self._sets[key] = _Held()
        held.packets[pno] = packet
        held.last = now
        if len(held.packets) == key[2]:
            del self._sets[key]
            return self._packets(held), evicted
        return None, evicted

    def expire(self, now: float) -> list[list[T]]:
        """Incomplete messages with no new packet for ``timeout_s``, removed."""
        old = [k for k, held in self._sets.items() if now - held.last >= self.timeout_s]
        return [self._packets(self._sets.pop(k)) for k in old]

    def drain(self) -> list[list[T]]:
        """Every incomplete message (the connection ended), removed."""
        out = [self._packets(held) for held in self._sets.values()]
        self._sets.clear()
        return out

    @staticmethod
    def _packets(held: _Held[T]) -> list[T]:
        return [held.packets[pno] for pno in sorted(held.packets)]
