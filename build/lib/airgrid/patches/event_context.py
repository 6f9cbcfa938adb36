"""Patch: a table write made later on behalf of an earlier event goes to that event's partition.

Defect (Faust 0.15, by design): a table write goes to the changelog partition (and the store
partition) of the event being processed, which Faust looks up in a context variable. The task
owner's group commit writes the tasks of several events at once, after the last one: without
naming each task's own event, a row landed in another station's partition, and a worker that
recovered the table from its changelog found an older version of the task (found by the kill test
with the memory store: a reminder applied twice).

Private names: ``faust.streams._current_event`` (the context variable).
Tests: tests/e2e/test_owner_group_commit.py, tests/e2e/test_kill_deadlines.py.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

from faust.streams import _current_event, current_event


def event_now() -> Any:
    """The event the calling agent is processing (None outside a stream)."""
    return current_event()


@contextlib.contextmanager
def writing_as(event: Any) -> Iterator[None]:
    """Table writes inside this block belong to ``event``."""
    if event is None:
        yield
        return
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
