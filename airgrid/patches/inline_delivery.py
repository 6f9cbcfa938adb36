"""Patch: the fetcher hands a message to the streams without four tasks per message.

Defect (Faust 0.15, a cost, not a loss): the consumer's fetch loop (``Consumer._drain_messages``)
delivers every message with ``await self.wait_first(callback(message), self.suspend_flow.wait())``,
so that a rebalance (``suspend_flow``) can interrupt a delivery that waits for room in a full
stream queue. mode's ``wait_first`` wraps each of the two, plus the service's ``stopped`` and
``crashed`` events, in a task, waits for the first with ``asyncio.wait`` and cancels the other
three: four tasks created and three cancelled per message, although a delivery almost never waits.
In a py-spy profile of a backlog drain this was 5.5 % of the worker's samples, more than airgrid's
whole detection.

Here the delivery coroutine is first run inline, up to its first suspension. If it finishes
without suspending (room in the queue, the producer's buffer below its limit: the usual case),
the message is delivered and nothing else was created. If it suspends, it goes on in the same
task, and one task watches ``suspend_flow``: a rebalance that comes first cancels the delivery, as
Faust's race would (the message is read again from the committed offsets). The delivery never
changes task half-way (a timeout inside it, as in the producer buffer's flush, stays bound to the
task it runs in). When the flow is already suspended, the service stopped or crashed, or the call
is any other ``wait_first``, Faust's path runs unchanged. Faust's loop still yields to the event
loop every 100 messages (``yield_every``) and whenever a delivery suspends.

Private names: Faust ``Consumer._drain_messages`` (the call shape it relies on),
``Consumer.suspend_flow``; mode ``Service.wait_first``, ``Service._stopped``, ``_crashed``.
Tests: tests/unit/test_patches.py (inline delivery, suspension, a rebalance during a suspended
delivery, errors), every kill, rebalance and stall audit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any

from mode.services import WaitResults

_EVENT_WAIT = asyncio.Event.wait.__code__


class InlineDelivery:
    """Mixin for Faust's aiokafka consumer."""

    suspend_flow: asyncio.Event
    _stopped: asyncio.Event
    _crashed: asyncio.Event

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:  # noqa: ASYNC109 (mode's)
        if timeout is not None or len(coros) != 2 or not self._is_delivery(coros[1]):
            return await super().wait_first(*coros, timeout=timeout)  # type: ignore[misc, no-any-return]
        delivery, suspended = coros
        if self.suspend_flow.is_set() or self._stopped.is_set() or self._crashed.is_set():
            return await super().wait_first(delivery, suspended)  # type: ignore[misc, no-any-return]
        suspended.close()  # not awaited: the slow path below watches the event itself
        try:
            step = delivery.send(None)
        except StopIteration as done:
            return WaitResults([delivery], [done.value], False)
        return await self._finish(delivery, step, suspended)

    async def _finish(self, delivery: Coroutine[Any, Any, Any], step: Any, suspended: Any) -> WaitResults:
        """Drive the suspended ``delivery`` to its end in this task, unless the flow is suspended
        first: then it is cancelled and ``suspended`` wins, as in Faust's race."""
        task = asyncio.current_task()
        assert task is not None
        interrupted = finished = False

        def on_suspend(watcher: asyncio.Future[Any]) -> None:
            nonlocal interrupted
            if not finished and not watcher.cancelled():
                interrupted = True
                task.cancel()

        watcher = asyncio.ensure_future(self.suspend_flow.wait())
        watcher.add_done_callback(on_suspend)
        try:
            result = await _Resumed(delivery, step)
        except asyncio.CancelledError:
            if interrupted and task.uncancel() == 0:
                return WaitResults([suspended], [True], False)
            raise
        finally:
            finished = True
            watcher.cancel()
        if interrupted:  # the delivery swallowed the cancellation and finished
            task.uncancel()
        return WaitResults([delivery], [result], False)

    def _is_delivery(self, waiter: Any) -> bool:
        """``waiter`` is ``self.suspend_flow.wait()``, not started: the fetch loop's call."""
        code = getattr(waiter, "cr_code", None)
        frame = getattr(waiter, "cr_frame", None)
        return code is _EVENT_WAIT and frame is not None and frame.f_locals.get("self") is self.suspend_flow


class _Resumed:
    """Awaiting this goes on with ``coro``, which was run up to its first suspension (it yielded
    ``step``): each yielded future goes to the task, its outcome is sent or thrown back in, as if
    the task had run ``coro`` from the start."""

    __slots__ = ("coro", "step")

    def __init__(self, coro: Coroutine[Any, Any, Any], step: Any) -> None:
        self.coro = coro
        self.step = step

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, step = self.coro, self.step
        while True:
            try:
                sent = yield step
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancellation (a rebalance came first) or an error
                try:
                    step = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    step = coro.send(sent)
                except StopIteration as done:
                    return done.value
